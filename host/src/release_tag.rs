//! Re-tagging a component: the same code under a new sha256, by appending a custom section
//! (`sei-operator task export --tag`, the hot-swap tests and benchmarks, the demo). Custom
//! sections do not change what a component does; the digest that pins it does change.
//!
//! Invariant (unit test below): the section is encoded as id 0, LEB128 size, LEB128 name length,
//! name, payload (`custom_section_is_encoded`); the sandbox loads a re-tagged built-in
//! (`tests/task_dir.rs` swaps them).

fn leb128(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// `component` with a custom section `name` carrying `payload` appended.
pub fn with_custom_section(component: &[u8], name: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    leb128(name.len(), &mut body);
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(payload);
    let mut out = component.to_vec();
    out.push(0);
    leb128(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

/// The section name `task export --tag` uses.
pub const RELEASE_SECTION: &str = "sei-release";

#[cfg(test)]
mod tests {
    #[test]
    fn custom_section_is_encoded() {
        let out = super::with_custom_section(b"\0asm", "v", &[7; 200]);
        assert_eq!(&out[..4], b"\0asm");
        assert_eq!(&out[4..8], &[0, 0xca, 0x01, 1], "id 0, size 202 as LEB128, name length 1");
        assert_eq!(out.len(), 4 + 1 + 2 + 1 + 1 + 200);
    }
}
