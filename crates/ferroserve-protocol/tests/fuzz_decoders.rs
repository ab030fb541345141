//! Property-driven fuzzing of every request decoder a client can reach:
//! v2 JSON and binary bodies, KServe v1 rows, v2 protobuf (`ModelInferRequest`
//! bytes, raw contents) and the OpenAI bodies. Inputs are random bytes and
//! random mutations of valid requests; each decoder must return `Ok` or an
//! error, never panic, and never allocate beyond what the input describes.
//! Runs in CI (`cargo test`) with a bounded number of cases
//! (`PROPTEST_CASES` raises it for longer local runs).

use bytes::Bytes;
use ferroserve_core::{DataType, Signature, TensorSpec};
use ferroserve_protocol::grpc::{pb, request_from_pb};
use ferroserve_protocol::openai::{ChatRequest, CompletionRequest, EmbeddingRequest};
use ferroserve_protocol::{v1, v2};
use proptest::prelude::*;
use prost::Message;

const V2_JSON: &str = r#"{"id":"1","parameters":{"binary_data_output":true},"inputs":[{"name":"input","datatype":"FP32","shape":[2,2],"data":[[1,2],[3,4]]},{"name":"s","datatype":"BYTES","shape":[1],"data":["x"]}],"outputs":[{"name":"o","parameters":{"binary_data":true}}]}"#;
const V2_BIN_HEADER: &str = r#"{"inputs":[{"name":"input","datatype":"FP32","shape":[1,2],"parameters":{"binary_data_size":8}},{"name":"s","datatype":"BYTES","shape":[1],"parameters":{"binary_data_size":5}}]}"#;
const V1_JSON: &str = r#"{"instances":[[1.0,2.0],[3.0,4.0]],"inputs":null}"#;
const CHAT: &str = r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"stop":["a"],"logit_bias":{"3":1.5},"stream":true,"stream_options":{"include_usage":true}}"#;
const COMPLETION: &str =
    r#"{"model":"m","prompt":[[1,2,3],[4]],"n":2,"logprobs":2,"temperature":0.5,"seed":3}"#;
const EMBEDDING: &str = r#"{"model":"m","input":["a","b"],"encoding_format":"base64"}"#;

/// Cases per property: `PROPTEST_CASES`, else 512 (bounded for CI).
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
}

fn binary_body() -> Vec<u8> {
    let mut b = V2_BIN_HEADER.as_bytes().to_vec();
    b.extend_from_slice(&1.0f32.to_le_bytes());
    b.extend_from_slice(&2.0f32.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    b.push(b'x');
    b
}

fn signature() -> Signature {
    Signature {
        platform: "p".into(),
        backend: "b".into(),
        model_file: "f".into(),
        inputs: vec![TensorSpec::new("input", DataType::F32, vec![-1, 2])],
        outputs: vec![TensorSpec::new("o", DataType::F32, vec![-1, 1])],
    }
}

/// A valid input with up to `n` random byte edits (overwrite, insert, delete).
fn mutated(valid: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec((any::<u8>(), any::<prop::sample::Index>(), 0u8..3), 0..8).prop_map(
        move |edits| {
            let mut v = valid.to_vec();
            for (byte, at, kind) in edits {
                if v.is_empty() {
                    v.push(byte);
                    continue;
                }
                let i = at.index(v.len());
                match kind {
                    0 => v[i] = byte,
                    1 => v.insert(i, byte),
                    _ => {
                        v.remove(i);
                    }
                }
            }
            v
        },
    )
}

fn decode_all(body: &[u8]) {
    let bytes = Bytes::copy_from_slice(body);
    let _ = v2::decode_request(&bytes, None);
    let header = body.len().min(V2_BIN_HEADER.len()).to_string();
    let _ = v2::decode_request(&bytes, Some(&header));
    let _ = v1::decode_request(body, &signature());
    let _ = ChatRequest::from_json(body);
    let _ = CompletionRequest::from_json(body);
    let _ = EmbeddingRequest::from_json(body);
    if let Ok(req) = pb::ModelInferRequest::decode(body) {
        let _ = request_from_pb(req);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        decode_all(&body);
    }

    #[test]
    fn mutated_v2_json_never_panics(body in mutated(V2_JSON.as_bytes())) {
        decode_all(&body);
    }

    #[test]
    fn mutated_v2_binary_never_panics(
        body in mutated(Box::leak(binary_body().into_boxed_slice())),
        split in 0usize..400,
    ) {
        let bytes = Bytes::from(body);
        let _ = v2::decode_request(&bytes, Some(&split.to_string()));
    }

    #[test]
    fn mutated_v1_and_openai_never_panic(
        v1 in mutated(V1_JSON.as_bytes()),
        chat in mutated(CHAT.as_bytes()),
        completion in mutated(COMPLETION.as_bytes()),
        embedding in mutated(EMBEDDING.as_bytes()),
    ) {
        decode_all(&v1);
        decode_all(&chat);
        decode_all(&completion);
        decode_all(&embedding);
    }

    #[test]
    fn protobuf_with_random_shapes_and_raw_contents_never_panics(
        shape in prop::collection::vec(any::<i64>(), 0..4),
        raw in prop::collection::vec(any::<u8>(), 0..64),
        dt in prop::sample::select(vec!["FP32", "BYTES", "INT8", "BF16", "BOOL", "FP64", "nope"]),
    ) {
        let req = pb::ModelInferRequest {
            model_name: "m".into(),
            inputs: vec![pb::model_infer_request::InferInputTensor {
                name: "input".into(),
                datatype: dt.into(),
                shape,
                ..Default::default()
            }],
            raw_input_contents: vec![Bytes::from(raw)],
            ..Default::default()
        };
        let _ = request_from_pb(req.clone());
        decode_all(&req.encode_to_vec());
    }
}

#[test]
fn valid_inputs_still_decode() {
    assert!(v2::decode_request(&Bytes::from_static(V2_JSON.as_bytes()), None).is_ok());
    let bin = Bytes::from(binary_body());
    assert!(v2::decode_request(&bin, Some(&V2_BIN_HEADER.len().to_string())).is_ok());
    assert!(v1::decode_request(V1_JSON.as_bytes(), &signature()).is_ok());
    assert!(ChatRequest::from_json(CHAT.as_bytes()).is_ok());
    assert!(CompletionRequest::from_json(COMPLETION.as_bytes()).is_ok());
    assert!(EmbeddingRequest::from_json(EMBEDDING.as_bytes()).is_ok());
}

#[test]
fn huge_declared_shapes_are_refused_without_allocating() {
    let body = r#"{"inputs":[{"name":"input","datatype":"FP32","shape":[4611686018427387904,4],"data":[1]}]}"#;
    assert!(v2::decode_request(&Bytes::from_static(body.as_bytes()), None).is_err());
    let header = r#"{"inputs":[{"name":"input","datatype":"FP32","shape":[1000000000000],"parameters":{"binary_data_size":4}}]}"#;
    let mut b = header.as_bytes().to_vec();
    b.extend_from_slice(&[0; 4]);
    assert!(v2::decode_request(&Bytes::from(b), Some(&header.len().to_string())).is_err());
}
