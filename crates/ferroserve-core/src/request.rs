//! The one internal request and response every protocol decodes into.

use crate::parameters::Parameters;
use crate::tensor::Tensor;

/// An output the client asked for, with its parameters (e.g. `binary_data`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RequestedOutput {
    /// Output name.
    pub name: String,
    /// Output parameters.
    pub parameters: Parameters,
}

/// An inference request, independent of the wire protocol.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InferRequest {
    /// Client-chosen id, echoed in the response.
    pub id: Option<String>,
    /// Request-level parameters.
    pub parameters: Parameters,
    /// Input tensors.
    pub inputs: Vec<Tensor>,
    /// Requested outputs; empty means all.
    pub outputs: Vec<RequestedOutput>,
}

/// An inference response, independent of the wire protocol.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InferResponse {
    /// Name of the model that answered.
    pub model_name: String,
    /// Version that answered.
    pub model_version: String,
    /// The request id, if one was given.
    pub id: Option<String>,
    /// Response-level parameters.
    pub parameters: Parameters,
    /// Output tensors, in the requested order (or the model's order).
    pub outputs: Vec<Tensor>,
}
