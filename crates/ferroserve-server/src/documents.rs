//! Protocol-independent documents about a model: Triton's model
//! configuration and statistics, produced once here and rendered as JSON
//! (REST) or protobuf (gRPC).

use ferroserve_core::registry::ServedModel;
use ferroserve_core::stats::StatsSnapshot;
use ferroserve_core::TensorSpec;
use ferroserve_protocol::grpc::pb;
use serde_json::{json, Value};

fn config_dims(spec: &TensorSpec, batched: bool) -> Vec<i64> {
    if batched {
        spec.shape.iter().skip(1).copied().collect()
    } else {
        spec.shape.clone()
    }
}

fn version_policy_json(m: &ServedModel) -> Value {
    use ferroserve_core::config::VersionPolicy;
    match &m.config.version_policy {
        VersionPolicy::Latest(n) => json!({"latest": {"num_versions": n}}),
        VersionPolicy::All => json!({"all": {}}),
        VersionPolicy::Specific(v) => json!({"specific": {"versions": v}}),
    }
}

fn instance_count(m: &ServedModel) -> u32 {
    m.scheduler
        .as_ref()
        .map(|s| s.config().instances as u32)
        .unwrap_or(1)
}

fn dynamic_batching_json(m: &ServedModel) -> Option<Value> {
    let s = m.scheduler.as_ref()?;
    let c = s.config();
    if !c.merge {
        return None;
    }
    Some(json!({
        "preferred_batch_size": c.preferred,
        "max_queue_delay_microseconds": c.max_delay.as_micros() as u64,
        "preserve_ordering": c.preserve_ordering,
        "priority_levels": if c.priority_levels > 1 { c.priority_levels } else { 0 },
        "default_priority_level": if c.priority_levels > 1 { c.default_priority } else { 0 },
        "default_queue_policy": {
            "timeout_action": format!("{:?}", c.queue.timeout_action),
            "default_timeout_microseconds": c.queue.default_timeout_microseconds,
            "allow_timeout_override": c.queue.allow_timeout_override,
            "max_queue_size": c.queue.max_queue_size,
        },
        "priority_queue_policy": {},
    }))
}

fn dynamic_batching_pb(m: &ServedModel) -> Option<pb::model_config::SchedulingChoice> {
    let s = m.scheduler.as_ref()?;
    let c = s.config();
    if !c.merge {
        return None;
    }
    Some(pb::model_config::SchedulingChoice::DynamicBatching(
        pb::ModelDynamicBatching {
            preferred_batch_size: c.preferred.iter().map(|&p| p as i32).collect(),
            max_queue_delay_microseconds: c.max_delay.as_micros() as u64,
            preserve_ordering: c.preserve_ordering,
            priority_levels: if c.priority_levels > 1 {
                c.priority_levels as u64
            } else {
                0
            },
            default_priority_level: if c.priority_levels > 1 {
                c.default_priority as u64
            } else {
                0
            },
            default_queue_policy: Some(pb::ModelQueuePolicy {
                timeout_action: match c.queue.timeout_action {
                    ferroserve_core::config::TimeoutAction::REJECT => 0,
                    ferroserve_core::config::TimeoutAction::DELAY => 1,
                },
                default_timeout_microseconds: c.queue.default_timeout_microseconds,
                allow_timeout_override: c.queue.allow_timeout_override,
                max_queue_size: c.queue.max_queue_size,
            }),
        },
    ))
}

/// Triton-style model configuration as JSON (`GET /v2/models/{m}/config`).
pub fn config_json(m: &ServedModel) -> Value {
    let sig = m.signature();
    let batched = m.max_batch_size > 0;
    let inputs: Vec<Value> = sig
        .inputs
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "data_type": s.datatype.triton_config_name(),
                "format": "FORMAT_NONE",
                "dims": config_dims(s, batched),
                "is_shape_tensor": false,
                "allow_ragged_batch": false,
                "optional": s.optional,
            })
        })
        .collect();
    let outputs: Vec<Value> = sig
        .outputs
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "data_type": s.datatype.triton_config_name(),
                "dims": config_dims(s, batched),
                "label_filename": "",
                "is_shape_tensor": false,
            })
        })
        .collect();
    let mut doc = json!({
        "name": m.name,
        "platform": sig.platform,
        "backend": sig.backend,
        "runtime": "",
        "version_policy": version_policy_json(m),
        "max_batch_size": m.max_batch_size,
        "input": inputs,
        "output": outputs,
        "batch_input": [],
        "batch_output": [],
        "instance_group": [{
            "name": m.name,
            "kind": "KIND_CPU",
            "count": instance_count(m),
            "gpus": [],
            "secondary_devices": [],
            "profile": [],
            "passive": false,
            "host_policy": "",
        }],
        "default_model_filename": sig.model_file,
        "cc_model_filenames": {},
        "metric_tags": {},
        "parameters": m.config.parameters.iter()
            .map(|(k, v)| (k.clone(), json!({"string_value": v})))
            .collect::<serde_json::Map<String, Value>>(),
        "model_warmup": [],
        "model_transaction_policy": {"decoupled": false},
    });
    if let Some(db) = dynamic_batching_json(m) {
        doc["dynamic_batching"] = db;
    }
    doc
}

fn data_type_pb(dt: ferroserve_core::DataType) -> i32 {
    use ferroserve_core::DataType as D;
    use pb::DataType as P;
    (match dt {
        D::Bool => P::TypeBool,
        D::U8 => P::TypeUint8,
        D::U16 => P::TypeUint16,
        D::U32 => P::TypeUint32,
        D::U64 => P::TypeUint64,
        D::I8 => P::TypeInt8,
        D::I16 => P::TypeInt16,
        D::I32 => P::TypeInt32,
        D::I64 => P::TypeInt64,
        D::F16 => P::TypeFp16,
        D::BF16 => P::TypeBf16,
        D::F32 => P::TypeFp32,
        D::F64 => P::TypeFp64,
        D::Bytes => P::TypeString,
    }) as i32
}

/// Triton-style model configuration as protobuf (gRPC `ModelConfig`).
pub fn config_pb(m: &ServedModel) -> pb::ModelConfig {
    use ferroserve_core::config::VersionPolicy;
    use pb::model_version_policy::{All, Latest, PolicyChoice, Specific};
    let sig = m.signature();
    let batched = m.max_batch_size > 0;
    let policy = match &m.config.version_policy {
        VersionPolicy::Latest(n) => PolicyChoice::Latest(Latest { num_versions: *n }),
        VersionPolicy::All => PolicyChoice::All(All {}),
        VersionPolicy::Specific(v) => PolicyChoice::Specific(Specific {
            versions: v.iter().map(|&x| x as i64).collect(),
        }),
    };
    pb::ModelConfig {
        name: m.name.clone(),
        platform: sig.platform.clone(),
        backend: sig.backend.clone(),
        version_policy: Some(pb::ModelVersionPolicy {
            policy_choice: Some(policy),
        }),
        max_batch_size: i32::try_from(m.max_batch_size).unwrap_or(i32::MAX),
        input: sig
            .inputs
            .iter()
            .map(|s| pb::ModelInput {
                name: s.name.clone(),
                data_type: data_type_pb(s.datatype),
                dims: config_dims(s, batched),
                optional: s.optional,
            })
            .collect(),
        output: sig
            .outputs
            .iter()
            .map(|s| pb::ModelOutput {
                name: s.name.clone(),
                data_type: data_type_pb(s.datatype),
                dims: config_dims(s, batched),
            })
            .collect(),
        scheduling_choice: dynamic_batching_pb(m),
        instance_group: vec![pb::ModelInstanceGroup {
            name: m.name.clone(),
            count: instance_count(m) as i32,
            kind: pb::model_instance_group::Kind::Cpu as i32,
        }],
        default_model_filename: sig.model_file.clone(),
        parameters: m
            .config
            .parameters
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    pb::ModelParameter {
                        string_value: v.clone(),
                    },
                )
            })
            .collect(),
    }
}

fn duration_json((count, ns): (u64, u64)) -> Value {
    json!({"count": count, "ns": ns})
}

/// Statistics of one model version as Triton's JSON.
pub fn stats_json(m: &ServedModel) -> Value {
    let s: StatsSnapshot = m.stats.snapshot();
    json!({
        "name": m.name,
        "version": m.version_str,
        "last_inference": s.last_inference_ms,
        "inference_count": s.inference_count,
        "execution_count": s.execution_count,
        "inference_stats": {
            "success": duration_json(s.success),
            "fail": duration_json(s.fail),
            "queue": duration_json(s.queue),
            "compute_input": duration_json(s.compute_input),
            "compute_infer": duration_json(s.compute_infer),
            "compute_output": duration_json(s.compute_output),
            "cache_hit": duration_json((0, 0)),
            "cache_miss": duration_json((0, 0)),
        },
        "batch_stats": s.batches.iter().map(|(size, b)| json!({
            "batch_size": size,
            "compute_input": duration_json((b.count, b.input_ns)),
            "compute_infer": duration_json((b.count, b.infer_ns)),
            "compute_output": duration_json((b.count, b.output_ns)),
        })).collect::<Vec<_>>(),
        "memory_usage": [],
        "response_stats": {},
    })
}

fn duration_pb((count, ns): (u64, u64)) -> Option<pb::StatisticDuration> {
    Some(pb::StatisticDuration { count, ns })
}

/// Statistics of one model version as protobuf.
pub fn stats_pb(m: &ServedModel) -> pb::ModelStatistics {
    let s = m.stats.snapshot();
    pb::ModelStatistics {
        name: m.name.clone(),
        version: m.version_str.clone(),
        last_inference: s.last_inference_ms,
        inference_count: s.inference_count,
        execution_count: s.execution_count,
        inference_stats: Some(pb::InferStatistics {
            success: duration_pb(s.success),
            fail: duration_pb(s.fail),
            queue: duration_pb(s.queue),
            compute_input: duration_pb(s.compute_input),
            compute_infer: duration_pb(s.compute_infer),
            compute_output: duration_pb(s.compute_output),
            cache_hit: duration_pb((0, 0)),
            cache_miss: duration_pb((0, 0)),
        }),
        batch_stats: s
            .batches
            .iter()
            .map(|(size, b)| pb::InferBatchStatistics {
                batch_size: *size,
                compute_input: duration_pb((b.count, b.input_ns)),
                compute_infer: duration_pb((b.count, b.infer_ns)),
                compute_output: duration_pb((b.count, b.output_ns)),
            })
            .collect(),
    }
}

/// Model metadata as v2 JSON.
pub fn metadata_json(m: &ServedModel, versions: Vec<String>) -> Value {
    let spec =
        |s: &TensorSpec| json!({"name": s.name, "datatype": s.datatype.as_str(), "shape": s.shape});
    let sig = m.signature();
    let mut doc = json!({
        "name": m.name,
        "versions": versions,
        "platform": sig.platform,
        "inputs": sig.inputs.iter().map(spec).collect::<Vec<_>>(),
        "outputs": sig.outputs.iter().map(spec).collect::<Vec<_>>(),
    });
    let extra = m.model.metadata_parameters();
    if !extra.is_empty() {
        doc["parameters"] = Value::Object(extra);
    }
    doc
}

/// Model metadata as protobuf.
pub fn metadata_pb(m: &ServedModel, versions: Vec<String>) -> pb::ModelMetadataResponse {
    use pb::model_metadata_response::TensorMetadata;
    let spec = |s: &TensorSpec| TensorMetadata {
        name: s.name.clone(),
        datatype: s.datatype.as_str().to_string(),
        shape: s.shape.clone(),
    };
    let sig = m.signature();
    pb::ModelMetadataResponse {
        name: m.name.clone(),
        versions,
        platform: sig.platform.clone(),
        inputs: sig.inputs.iter().map(spec).collect(),
        outputs: sig.outputs.iter().map(spec).collect(),
    }
}
