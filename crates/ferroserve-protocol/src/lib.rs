//! Wire formats of ferroserve: KServe v1 JSON, Open Inference Protocol v2
//! JSON with the binary tensor extension, and v2 protobuf for gRPC. Each
//! turns its wire format into the core `InferRequest` and back.

pub mod grpc;
pub mod json_data;
pub mod openai;
pub mod v1;
pub mod v2;
