//! The serving core of ferroserve: tensors, the internal request and
//! response, the `Model` and `Runtime` traits, per-model configuration, the
//! model registry, statistics, and request execution. No HTTP, no engines.

pub mod config;
pub mod contain;
pub mod datatype;
pub mod error;
pub mod executor;
pub mod generate;
pub mod model;
pub mod parameters;
pub mod pbtxt;
pub mod registry;
pub mod request;
pub mod scheduler;
pub mod stats;
pub mod tensor;
pub mod trace;

pub use config::ModelConfig;
pub use datatype::DataType;
pub use error::{Error, Result};
pub use model::{InferContext, LoadContext, Model, Runtime, Signature, TensorSpec};
pub use parameters::{ParamValue, Parameters};
pub use registry::{Registry, RegistryOptions, ServedModel};
pub use request::{InferRequest, InferResponse, RequestedOutput};
pub use tensor::{Tensor, TensorData, TensorError};
