//! MLflow's scoring protocol (what `mlflow models serve` answers):
//! `POST /invocations`, `GET /ping`, `GET /health`, `GET /version`.
//!
//! `/invocations` serves the only loaded model. Its JSON body is one of
//! `dataframe_split` (`{columns, data}`), `dataframe_records` (`[{col: v}]`),
//! `instances` or `inputs` (tensors), or a CSV body (`Content-Type:
//! text/csv`, header row = column names). It is turned into a KServe v1
//! request for the model's signature and answered as
//! `{"predictions": [...]}`, like MLflow 2.x. Errors are MLflow's
//! `{"error_code": "BAD_REQUEST", "message": "..."}`.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ferroserve_core::{executor, Error, Signature};
use ferroserve_protocol::v1;
use serde_json::{Map, Value};

use super::body::read_limited;
use super::error::status_of;
use crate::state::AppState;

/// Name of the matrix input of models without per-column inputs.
const MATRIX_INPUT: &str = "input-0";

/// An error answered in MLflow's shape.
pub struct MlflowError(pub Error);

impl From<Error> for MlflowError {
    fn from(e: Error) -> Self {
        MlflowError(e)
    }
}

/// MLflow's `error_code` for an HTTP status (the status comes from
/// [`status_of`], the one mapping of core errors).
fn error_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 413 => "BAD_REQUEST",
        404 => "RESOURCE_DOES_NOT_EXIST",
        429 => "RESOURCE_EXHAUSTED",
        501 => "NOT_IMPLEMENTED",
        503 | 504 => "TEMPORARILY_UNAVAILABLE",
        _ => "INTERNAL_ERROR",
    }
}

impl IntoResponse for MlflowError {
    fn into_response(self) -> Response {
        let status = status_of(&self.0);
        let body =
            serde_json::json!({"error_code": error_code(status), "message": self.0.to_string()});
        (status, axum::Json(body)).into_response()
    }
}

fn ready_text(st: &AppState) -> Response {
    if st.registry.is_ready() {
        (StatusCode::OK, "\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

/// `GET /ping` and `GET /health`: 200 when the server is ready, else 503.
pub async fn ping(State(st): State<AppState>) -> Response {
    ready_text(&st)
}

/// `GET /version`: the server's version.
pub async fn version() -> Response {
    (
        StatusCode::OK,
        concat!("ferroserve ", env!("CARGO_PKG_VERSION")),
    )
        .into_response()
}

/// `POST /invocations`: scores the only loaded model.
pub async fn invocations(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, MlflowError> {
    let names = st.registry.loaded_names();
    let name = match names.as_slice() {
        [one] => one.clone(),
        [] => return Err(Error::Unavailable("no model is loaded".into()).into()),
        many => {
            return Err(Error::invalid(format!(
                "/invocations serves a single model, but {} are loaded ({}); use /v2/models/<name>/infer or /v1/models/<name>:predict",
                many.len(),
                many.join(", ")
            ))
            .into())
        }
    };
    let model = st.registry.get(&name, None)?;
    let bytes = read_limited(&headers, body, st.max_body_bytes).await?;
    let is_csv = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/csv"));
    let request = if is_csv {
        let text =
            std::str::from_utf8(&bytes).map_err(|_| Error::invalid("the CSV body is not UTF-8"))?;
        let (columns, data) = parse_csv(text)?;
        frame_to_v1(Some(columns), data, model.signature())?
    } else {
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::invalid(format!("malformed request JSON: {e}")))?;
        to_v1(v, model.signature())?
    };
    let body = serde_json::to_vec(&request).map_err(|e| Error::internal(e.to_string()))?;
    let req = v1::decode_request(&body, model.signature())?;
    let resp = executor::infer(model, req).await?;
    let mut out = Response::new(Body::from(v1::encode_response(&resp)?));
    out.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(out)
}

/// The KServe v1 body for an MLflow scoring body.
fn to_v1(v: Value, sig: &Signature) -> Result<Value, Error> {
    let Value::Object(mut obj) = v else {
        return Err(Error::invalid("request body must be a JSON object"));
    };
    const FORMATS: &str = "dataframe_split, dataframe_records, instances, inputs";
    let keys: Vec<&str> = [
        "dataframe_split",
        "dataframe_records",
        "instances",
        "inputs",
    ]
    .into_iter()
    .filter(|k| obj.contains_key(*k))
    .collect();
    if keys.len() != 1 {
        return Err(Error::invalid(format!(
            "the body must have exactly one of {FORMATS} (found: {})",
            if keys.is_empty() {
                "none".to_string()
            } else {
                keys.join(", ")
            }
        )));
    }
    if let Some(split) = obj.remove("dataframe_split") {
        let Value::Object(mut s) = split else {
            return Err(Error::invalid(
                "'dataframe_split' must be an object {columns, data}",
            ));
        };
        let columns = match s.remove("columns") {
            None | Some(Value::Null) => None,
            Some(Value::Array(c)) => Some(
                c.into_iter()
                    .map(|c| match c {
                        Value::String(s) => s,
                        other => other.to_string(),
                    })
                    .collect(),
            ),
            Some(_) => return Err(Error::invalid("'dataframe_split.columns' must be a list")),
        };
        let data = match s.remove("data") {
            Some(Value::Array(rows)) => rows,
            _ => {
                return Err(Error::invalid(
                    "'dataframe_split.data' must be a list of rows",
                ))
            }
        };
        return frame_to_v1(columns, data, sig);
    }
    if let Some(records) = obj.remove("dataframe_records") {
        let Value::Array(records) = records else {
            return Err(Error::invalid(
                "'dataframe_records' must be a list of objects",
            ));
        };
        let mut columns: Vec<String> = Vec::new();
        for r in &records {
            let Value::Object(m) = r else {
                return Err(Error::invalid(
                    "each of 'dataframe_records' must be an object",
                ));
            };
            for k in m.keys() {
                if !columns.contains(k) {
                    columns.push(k.clone());
                }
            }
        }
        let data = records
            .into_iter()
            .map(|r| {
                let mut m = match r {
                    Value::Object(m) => m,
                    _ => Map::new(),
                };
                Value::Array(
                    columns
                        .iter()
                        .map(|c| m.remove(c).unwrap_or(Value::Null))
                        .collect(),
                )
            })
            .collect();
        return frame_to_v1(Some(columns), data, sig);
    }
    let matrix = sig.inputs.len() > 1 && sig.inputs.iter().any(|s| s.name == MATRIX_INPUT);
    if let Some(instances) = obj.remove("instances") {
        let rows_are_lists =
            matches!(&instances, Value::Array(r) if r.first().is_some_and(Value::is_array));
        if matrix && rows_are_lists {
            return Ok(serde_json::json!({"inputs": {MATRIX_INPUT: instances}}));
        }
        return Ok(serde_json::json!({ "instances": instances }));
    }
    let inputs = obj.remove("inputs").unwrap_or(Value::Null);
    if matrix && inputs.is_array() {
        return Ok(serde_json::json!({"inputs": {MATRIX_INPUT: inputs}}));
    }
    Ok(serde_json::json!({ "inputs": inputs }))
}

/// A data frame (`columns` may be absent) as a v1 body: columnar by name
/// when every column is a model input, else one matrix input.
fn frame_to_v1(
    columns: Option<Vec<String>>,
    data: Vec<Value>,
    sig: &Signature,
) -> Result<Value, Error> {
    if let Some(cols) = columns
        .as_ref()
        .filter(|c| !c.is_empty() && c.iter().all(|c| sig.inputs.iter().any(|s| &s.name == c)))
    {
        let mut out: Vec<Vec<Value>> = vec![Vec::with_capacity(data.len()); cols.len()];
        for (i, row) in data.into_iter().enumerate() {
            let Value::Array(row) = row else {
                return Err(Error::invalid(format!("row {i} of 'data' is not a list")));
            };
            if row.len() != cols.len() {
                return Err(Error::invalid(format!(
                    "row {i} has {} values for {} columns",
                    row.len(),
                    cols.len()
                )));
            }
            for (col, v) in out.iter_mut().zip(row) {
                col.push(v);
            }
        }
        let m: Map<String, Value> = cols
            .iter()
            .cloned()
            .zip(out.into_iter().map(Value::Array))
            .collect();
        return Ok(serde_json::json!({ "inputs": m }));
    }
    let target = sig
        .inputs
        .iter()
        .find(|s| s.name == MATRIX_INPUT)
        .or(match sig.inputs.as_slice() {
            [one] => Some(one),
            _ => None,
        })
        .ok_or_else(|| {
            Error::invalid(format!(
                "the model's inputs are {}; send a data frame with these columns",
                sig.inputs
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
    Ok(serde_json::json!({"inputs": {target.name.clone(): data}}))
}

/// A CSV body: header row of column names, then rows (numbers where they
/// parse, else strings; no quoting).
fn parse_csv(text: &str) -> Result<(Vec<String>, Vec<Value>), Error> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines
        .next()
        .ok_or_else(|| Error::invalid("the CSV body is empty"))?;
    let columns: Vec<String> = header.split(',').map(|c| c.trim().to_string()).collect();
    let data = lines
        .map(|l| {
            Value::Array(
                l.split(',')
                    .map(|v| {
                        let v = v.trim();
                        if let Ok(i) = v.parse::<i64>() {
                            return Value::from(i);
                        }
                        match v.parse::<f64>() {
                            Ok(x) => serde_json::Number::from_f64(x)
                                .map(Value::Number)
                                .unwrap_or(Value::Null),
                            Err(_) => Value::String(v.to_string()),
                        }
                    })
                    .collect(),
            )
        })
        .collect();
    Ok((columns, data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferroserve_core::{DataType, TensorSpec};

    fn sig(names: &[&str]) -> Signature {
        Signature {
            platform: String::new(),
            backend: String::new(),
            model_file: String::new(),
            inputs: names
                .iter()
                .map(|n| TensorSpec::new(*n, DataType::F64, vec![-1]))
                .collect(),
            outputs: vec![],
        }
    }

    #[test]
    fn frames_become_v1() {
        let s = sig(&["a", "b", "input-0"]);
        let v = to_v1(
            serde_json::json!({"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3, 4]]}}),
            &s,
        )
        .unwrap();
        assert_eq!(v, serde_json::json!({"inputs": {"a": [1, 3], "b": [2, 4]}}));
        let v = to_v1(
            serde_json::json!({"dataframe_records": [{"a": 1, "b": 2}]}),
            &s,
        )
        .unwrap();
        assert_eq!(v, serde_json::json!({"inputs": {"a": [1], "b": [2]}}));
        let v = to_v1(serde_json::json!({"instances": [[1, 2]]}), &s).unwrap();
        assert_eq!(v, serde_json::json!({"inputs": {"input-0": [[1, 2]]}}));
        let one = sig(&["x"]);
        let v = to_v1(
            serde_json::json!({"dataframe_split": {"columns": ["p", "q"], "data": [[1, 2]]}}),
            &one,
        )
        .unwrap();
        assert_eq!(v, serde_json::json!({"inputs": {"x": [[1, 2]]}}));
        assert!(to_v1(serde_json::json!({"foo": 1}), &s).is_err());
        assert!(to_v1(
            serde_json::json!({"dataframe_split": {"columns": ["a", "b"], "data": [[1]]}}),
            &s
        )
        .is_err());
        let (c, d) = parse_csv("a,b\n1,2\n3,x\n").unwrap();
        assert_eq!(c, ["a", "b"]);
        assert_eq!(d[1], serde_json::json!([3, "x"]));
    }
}
