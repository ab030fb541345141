//! Panics of third-party code (model parsers and engines: tract, ONNX
//! Runtime, tokenizers, candle) contained where they happen: a corrupt model
//! file or a kernel's assertion fails that load or request with an error
//! naming the panic, never the server.
//!
//! Rust's panic hook prints every panic to stderr, caught or not; a panic
//! caught here is instead reported once as a `tracing` warning (the caller
//! turns it into its error) when the binary has installed [`quiet_hook`].
//! Panics anywhere else keep the default report.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    static CONTAINED: Cell<u32> = const { Cell::new(0) };
}

/// Runs `f`; a panic inside it becomes `Err` with the panic's message.
///
/// `f` is taken as unwind-safe: callers drop whatever `f` was working on
/// (a half-built model, a request's tensors) when it fails.
pub fn contain<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    CONTAINED.with(|c| c.set(c.get() + 1));
    let result = catch_unwind(AssertUnwindSafe(f));
    CONTAINED.with(|c| c.set(c.get().saturating_sub(1)));
    result.map_err(|payload| message(payload.as_ref()))
}

/// The text of a panic payload.
pub fn message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic without a message".to_string())
}

/// Installs (once per process) a panic hook that reports panics caught by
/// [`contain`] as one warning instead of the default stderr report, and
/// leaves every other panic to the hook installed before.
pub fn quiet_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CONTAINED.with(|c| c.get() > 0) {
                let at = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                tracing::warn!(
                    at,
                    "contained a panic in a model library: {}",
                    message(info.payload())
                );
            } else {
                default(info);
            }
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_errors_with_their_message() {
        quiet_hook();
        assert_eq!(contain(|| 2 + 2), Ok(4));
        assert_eq!(
            contain(|| -> u32 { panic!("bad graph {}", 7) }),
            Err("bad graph 7".to_string())
        );
        assert_eq!(
            contain(|| -> u32 { std::panic::panic_any(5u8) }),
            Err("panic without a message".to_string())
        );
        // Nested: the inner panic is contained, the outer call goes on.
        let outer = contain(|| contain(|| -> () { panic!("inner") }).unwrap_err());
        assert_eq!(outer.as_deref(), Ok("inner"));
        // Outside `contain` the flag is down again.
        assert_eq!(CONTAINED.with(|c| c.get()), 0);
    }
}
