//! Which route pattern a request path matches, known before the router
//! runs (for the HTTP edge's metrics labels, span names and the request
//! logger's choice of routes).

/// The label of requests that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// The route patterns of a router, to tell which one a request path
/// matches before the router runs. matchit is the matcher axum itself uses
/// (the same version), so both agree on every path.
pub struct RouteTable {
    routes: matchit::Router<&'static str>,
    /// Tells tables apart in the per-thread cache of [`Self::matched`].
    id: u64,
}

impl Default for RouteTable {
    fn default() -> Self {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        RouteTable {
            routes: matchit::Router::new(),
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }
}

/// Paths up to this long are remembered by [`RouteTable::matched`].
const CACHED_PATH: usize = 256;

thread_local! {
    /// The last path this thread matched: (table, path, route). Traffic
    /// mostly repeats a few paths; comparing one costs a fraction of
    /// matching it again.
    static LAST_MATCH: std::cell::RefCell<(u64, String, &'static str)> =
        const { std::cell::RefCell::new((u64::MAX, String::new(), UNMATCHED)) };
}

impl RouteTable {
    /// Adds `pattern` (axum's syntax, as given to `Router::route`).
    pub fn add(&mut self, pattern: &'static str) -> Result<(), matchit::InsertError> {
        self.routes.insert(pattern, pattern)
    }

    /// The pattern `path` matches, or [`UNMATCHED`].
    pub fn matched(&self, path: &str) -> &'static str {
        LAST_MATCH.with(|last| {
            let mut last = last.borrow_mut();
            if last.0 == self.id && last.1 == path {
                return last.2;
            }
            let route = self.routes.at(path).map_or(UNMATCHED, |m| *m.value);
            if path.len() <= CACHED_PATH {
                last.0 = self.id;
                last.1.clear();
                last.1.push_str(path);
                last.2 = route;
            }
            route
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_table_matches_as_axum_and_tells_tables_apart() {
        let mut a = RouteTable::default();
        a.add("/v2/models/{m}/infer").unwrap();
        a.add("/v2/models/{m}/versions/{v}/infer").unwrap();
        let mut b = RouteTable::default();
        b.add("/v2/models/{m}").unwrap();
        for _ in 0..2 {
            // Twice: the second time from the per-thread cache.
            assert_eq!(a.matched("/v2/models/x/infer"), "/v2/models/{m}/infer");
            assert_eq!(b.matched("/v2/models/x/infer"), UNMATCHED);
            assert_eq!(b.matched("/v2/models/x"), "/v2/models/{m}");
            assert_eq!(a.matched("/v2/models/x"), UNMATCHED);
            assert_eq!(
                a.matched("/v2/models/x/versions/2/infer"),
                "/v2/models/{m}/versions/{v}/infer"
            );
        }
    }
}
