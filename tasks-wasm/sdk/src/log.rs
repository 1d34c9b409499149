//! Logging into the controller's log (the `log` host interface). Lines are attributed to the
//! task, node and module digest by the host; over-long lines are truncated by the host.

use crate::bindings::sei::task::log::Level;
use crate::host::log;

pub fn trace(msg: &str) {
    log(Level::Trace, msg)
}
pub fn debug(msg: &str) {
    log(Level::Debug, msg)
}
pub fn info(msg: &str) {
    log(Level::Info, msg)
}
pub fn warn(msg: &str) {
    log(Level::Warn, msg)
}
pub fn error(msg: &str) {
    log(Level::Error, msg)
}
