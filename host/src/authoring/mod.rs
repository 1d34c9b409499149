//! The author kit behind `sei-operator task new|build|test|run|replay|bench`: scaffolds,
//! componentizing, a harness that runs steps under the controller's scope and limits, case
//! files, and record/replay of host calls. The CLI (`cli/task.rs`) is the thin edge over it.

pub mod cases;
pub mod component;
pub mod harness;
pub mod recording;
pub mod report;
pub mod scaffold;
