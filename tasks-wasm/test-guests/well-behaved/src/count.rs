//! The pure logic of the `count` task type, shared verbatim with the host's native-vs-wasm
//! benchmark (`host/benches/sandbox.rs` includes this file), so the ratio compares like with like.

/// One step of `count`: `params` is `{"steps": N}`, `checkpoint` the number of steps done so far.
/// Returns `Ok((true, output_json))` when done, `Ok((false, new_checkpoint_json))` otherwise.
pub fn count_step(params_json: &str, checkpoint: Option<&str>) -> Result<(bool, String), String> {
    #[derive(serde::Deserialize)]
    struct CountParams {
        steps: u32,
    }
    let params: CountParams = serde_json::from_str(params_json).map_err(|e| format!("params: {e}"))?;
    let done: u32 = match checkpoint {
        Some(c) => serde_json::from_str(c).map_err(|e| format!("checkpoint: {e}"))?,
        None => 0,
    } + 1;
    let out = serde_json::to_string(&done).map_err(|e| e.to_string())?;
    Ok((done >= params.steps, out))
}
