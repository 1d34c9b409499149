//! Test guest: `describe` claims two million (empty) task types. The host must refuse it from
//! the list's length alone, without lifting two million strings into its own memory
//! (`describe_bomb_is_refused_before_lifting` in `host/tests/sandbox_bounds.rs`).

use sei_task_sdk::prelude::*;

/// Task types claimed; their list takes 24 MB of the guest's memory, well within its 64 MiB.
pub const CLAIMED: usize = 2_000_000;

struct DescribeBomb;

impl TaskModule for DescribeBomb {
    fn info() -> ModuleInfo {
        (0..CLAIMED).fold(ModuleInfo::new("test-describe-bomb", "0.1.0"), |m, _| m.task_type(""))
    }

    fn execute(_input: Input) -> Result<Step, TaskError> {
        Ok(Step::done())
    }
}

sei_task_sdk::export_task_module!(DescribeBomb);
