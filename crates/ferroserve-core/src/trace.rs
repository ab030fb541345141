//! Request-stage spans (`queue`, `batch`, `compute`, …) for distributed
//! tracing. They are `tracing` spans at INFO level under the target
//! [`TARGET`], which the log filter always turns off: with tracing off every
//! subscriber rejects them at the callsite (one cached atomic load each, and
//! nothing built). The server turns them into OpenTelemetry spans when
//! `--tracing` is on, and then only inside a sampled request.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tracing::Instrument;

static ON: AtomicBool = AtomicBool::new(false);

/// The `tracing` target of every request-stage span (and of the server span
/// that parents them). Spans under it are exported; nothing else is.
pub const TARGET: &str = "ferroserve::trace";

/// A request-stage span under [`TARGET`] at INFO level; takes what
/// `tracing::info_span!` takes after its target (a name, fields). Built only
/// inside a traced request ([`in_traced_request`]), else `Span::none()`
/// without asking the subscriber. `stage_span!(in &parent, "name", …)`
/// builds it as a child of `parent` (on any thread), or not at all when
/// `parent` is none.
#[macro_export]
macro_rules! stage_span {
    (in $parent:expr, $($rest:tt)*) => {{
        let parent: &::tracing::Span = $parent;
        if parent.is_none() {
            ::tracing::Span::none()
        } else {
            parent.in_scope(|| ::tracing::info_span!(target: "ferroserve::trace", $($rest)*))
        }
    }};
    ($($rest:tt)*) => {
        if $crate::trace::in_traced_request() {
            ::tracing::info_span!(target: "ferroserve::trace", $($rest)*)
        } else {
            ::tracing::Span::none()
        }
    };
}

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Whether the code running on this thread serves a sampled request (its
/// future is wrapped by [`traced_in`]). One atomic load when tracing is off.
#[inline]
pub fn in_traced_request() -> bool {
    enabled() && DEPTH.with(|d| d.get() > 0)
}

struct DepthGuard;

impl DepthGuard {
    fn enter() -> Self {
        DEPTH.with(|d| d.set(d.get().saturating_add(1)));
        DepthGuard
    }
}

impl Drop for DepthGuard {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// A future running inside a request's span, marked as traced while it is
/// polled (see [`traced_in`]).
pub struct Traced<F> {
    inner: Pin<Box<tracing::instrument::Instrumented<F>>>,
    on: bool,
}

impl<F: Future> Future for Traced<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _guard = self.on.then(DepthGuard::enter);
        self.inner.as_mut().poll(cx)
    }
}

/// Runs `fut` in `span`; when `span` is a real (sampled) span, stage spans
/// created while `fut` runs become its children.
pub fn traced_in<F: Future>(fut: F, span: tracing::Span) -> Traced<F> {
    let on = !span.is_none();
    Traced {
        inner: Box::pin(fut.instrument(span)),
        on,
    }
}

/// Marks span export on or off (the server does, once, at start-up).
pub fn set_enabled(on: bool) {
    ON.store(on, Ordering::Relaxed);
}

/// Whether spans are exported at all (a single atomic load).
#[inline]
pub fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Records the model a request resolved to on the current (server) span, as
/// `ferroserve.model.name` / `ferroserve.model.version`; a no-op outside a
/// traced request or when the current span has no such fields.
#[inline]
pub fn record_model(name: &str, version: &str) {
    if !in_traced_request() {
        return;
    }
    let span = tracing::Span::current();
    span.record("ferroserve.model.name", name);
    span.record("ferroserve.model.version", version);
}
