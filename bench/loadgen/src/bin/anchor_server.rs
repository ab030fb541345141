//! `anchor-server`: answers every HTTP request (after reading its body) with one fixed
//! Open Inference Protocol v2 JSON response, and every gRPC `ModelInfer` with a fixed
//! `ModelInferResponse`. No parsing, no model: it shows what the transport stack
//! (hyper / tonic on tokio) and the load generator cost on this machine.
//!
//! GETs answer just enough (model metadata, Triton model configuration, health) for
//! Triton's perf_analyzer to run against it too.
//!
//!     anchor-server --http_port 8080 --grpc_port 8081

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::{Context, Result};
use bytes::Bytes;
use clap::Parser;
use ferroserve_protocol::grpc::pb;
use ferroserve_protocol::grpc::pb::grpc_inference_service_server::{
    GrpcInferenceService, GrpcInferenceServiceServer,
};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tonic::{Request, Response, Status};

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long = "http_port", alias = "http-port")]
    http_port: Option<u16>,
    #[arg(long = "grpc_port", alias = "grpc-port")]
    grpc_port: Option<u16>,
    /// Tokio worker threads (default: number of CPUs).
    #[arg(long)]
    threads: Option<usize>,
}

const JSON_RESPONSE: &str = r#"{"model_name":"iris","model_version":"1","outputs":[{"name":"probabilities","shape":[1,3],"datatype":"FP32","data":[0.9947719,0.0052280775,8.04853e-10]}]}"#;

const JSON_METADATA: &str = r#"{"name":"iris","versions":["1"],"platform":"onnxruntime_onnx","inputs":[{"name":"input","datatype":"FP32","shape":[-1,4]}],"outputs":[{"name":"probabilities","datatype":"FP32","shape":[-1,3]}]}"#;
const JSON_CONFIG: &str = r#"{"name":"iris","platform":"onnxruntime_onnx","backend":"onnxruntime","max_batch_size":1024,"input":[{"name":"input","data_type":"TYPE_FP32","dims":[4]}],"output":[{"name":"probabilities","data_type":"TYPE_FP32","dims":[3]}],"instance_group":[{"count":1,"kind":"KIND_CPU"}]}"#;
const JSON_SERVER: &str = r#"{"name":"anchor","version":"0","extensions":["model_configuration"]}"#;

fn tensor_md(name: &str, shape: Vec<i64>) -> pb::model_metadata_response::TensorMetadata {
    pb::model_metadata_response::TensorMetadata {
        name: name.into(),
        datatype: "FP32".into(),
        shape,
    }
}

fn grpc_response() -> pb::ModelInferResponse {
    pb::ModelInferResponse {
        model_name: "iris".into(),
        model_version: "1".into(),
        outputs: vec![pb::model_infer_response::InferOutputTensor {
            name: "probabilities".into(),
            datatype: "FP32".into(),
            shape: vec![1, 3],
            ..Default::default()
        }],
        // Raw little-endian output, as Triton (and perf_analyzer's client, which crashes on
        // typed output contents) expects.
        raw_output_contents: vec![[0.994_771_9f32, 0.005_228_077_5, 8.04853e-10]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect::<Vec<u8>>()
            .into()],
        ..Default::default()
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(t) = args.threads {
        rt.worker_threads(t.max(1));
    }
    rt.build()?.block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    if args.http_port.is_none() && args.grpc_port.is_none() {
        anyhow::bail!("pass --http_port and/or --grpc_port");
    }
    let mut tasks = Vec::new();
    if let Some(p) = args.http_port {
        let addr: SocketAddr = format!("{}:{p}", args.host).parse()?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        eprintln!("anchor-server: HTTP on {addr}");
        tasks.push(tokio::spawn(serve_http(listener)));
    }
    if let Some(p) = args.grpc_port {
        let addr: SocketAddr = format!("{}:{p}", args.host).parse()?;
        eprintln!("anchor-server: gRPC on {addr}");
        tasks.push(tokio::spawn(async move {
            tonic::transport::Server::builder()
                .tcp_nodelay(true)
                .add_service(GrpcInferenceServiceServer::new(Anchor {
                    resp: grpc_response(),
                }))
                .serve(addr)
                .await
                .context("gRPC server")
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

async fn serve_http(listener: tokio::net::TcpListener) -> Result<()> {
    let body = Bytes::from_static(JSON_RESPONSE.as_bytes());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let body = body.clone();
                async move {
                    if req.method() == hyper::Method::GET {
                        let path = req.uri().path();
                        let text = if path.ends_with("/config") {
                            JSON_CONFIG
                        } else if path.starts_with("/v2/models/") {
                            JSON_METADATA
                        } else if path.starts_with("/v2/health") {
                            ""
                        } else {
                            JSON_SERVER
                        };
                        return Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .header(hyper::header::CONTENT_TYPE, "application/json")
                                .body(Full::new(Bytes::from_static(text.as_bytes())))
                                .expect("static response"),
                        );
                    }
                    // Read the request body as a real server must.
                    let _ = req.into_body().collect().await;
                    Ok::<_, Infallible>(
                        hyper::Response::builder()
                            .header(hyper::header::CONTENT_TYPE, "application/json")
                            .body(Full::new(body))
                            .expect("static response"),
                    )
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

struct Anchor {
    resp: pb::ModelInferResponse,
}

type Res<T> = std::result::Result<Response<T>, Status>;

#[tonic::async_trait]
impl GrpcInferenceService for Anchor {
    async fn server_live(&self, _: Request<pb::ServerLiveRequest>) -> Res<pb::ServerLiveResponse> {
        Ok(Response::new(pb::ServerLiveResponse { live: true }))
    }
    async fn server_ready(
        &self,
        _: Request<pb::ServerReadyRequest>,
    ) -> Res<pb::ServerReadyResponse> {
        Ok(Response::new(pb::ServerReadyResponse { ready: true }))
    }
    async fn model_ready(&self, _: Request<pb::ModelReadyRequest>) -> Res<pb::ModelReadyResponse> {
        Ok(Response::new(pb::ModelReadyResponse { ready: true }))
    }
    async fn server_metadata(
        &self,
        _: Request<pb::ServerMetadataRequest>,
    ) -> Res<pb::ServerMetadataResponse> {
        Ok(Response::new(pb::ServerMetadataResponse {
            name: "anchor".into(),
            version: "0".into(),
            extensions: vec!["model_configuration".into()],
        }))
    }
    async fn model_metadata(
        &self,
        _: Request<pb::ModelMetadataRequest>,
    ) -> Res<pb::ModelMetadataResponse> {
        Ok(Response::new(pb::ModelMetadataResponse {
            name: "iris".into(),
            versions: vec!["1".into()],
            platform: "onnxruntime_onnx".into(),
            inputs: vec![tensor_md("input", vec![-1, 4])],
            outputs: vec![tensor_md("probabilities", vec![-1, 3])],
        }))
    }
    async fn model_infer(&self, _: Request<pb::ModelInferRequest>) -> Res<pb::ModelInferResponse> {
        Ok(Response::new(self.resp.clone()))
    }
    type ModelStreamInferStream = tonic::codegen::tokio_stream::Empty<
        std::result::Result<pb::ModelStreamInferResponse, Status>,
    >;
    async fn model_stream_infer(
        &self,
        _: Request<tonic::Streaming<pb::ModelInferRequest>>,
    ) -> Res<Self::ModelStreamInferStream> {
        Err(Status::unimplemented("anchor"))
    }
    async fn model_config(
        &self,
        _: Request<pb::ModelConfigRequest>,
    ) -> Res<pb::ModelConfigResponse> {
        let fp32 = pb::DataType::TypeFp32 as i32;
        Ok(Response::new(pb::ModelConfigResponse {
            config: Some(pb::ModelConfig {
                name: "iris".into(),
                platform: "onnxruntime_onnx".into(),
                backend: "onnxruntime".into(),
                max_batch_size: 1024,
                input: vec![pb::ModelInput {
                    name: "input".into(),
                    data_type: fp32,
                    dims: vec![4],
                    ..Default::default()
                }],
                output: vec![pb::ModelOutput {
                    name: "probabilities".into(),
                    data_type: fp32,
                    dims: vec![3],
                }],
                ..Default::default()
            }),
        }))
    }
    async fn model_statistics(
        &self,
        _: Request<pb::ModelStatisticsRequest>,
    ) -> Res<pb::ModelStatisticsResponse> {
        Err(Status::unimplemented("anchor"))
    }
    async fn repository_index(
        &self,
        _: Request<pb::RepositoryIndexRequest>,
    ) -> Res<pb::RepositoryIndexResponse> {
        Err(Status::unimplemented("anchor"))
    }
    async fn repository_model_load(
        &self,
        _: Request<pb::RepositoryModelLoadRequest>,
    ) -> Res<pb::RepositoryModelLoadResponse> {
        Err(Status::unimplemented("anchor"))
    }
    async fn repository_model_unload(
        &self,
        _: Request<pb::RepositoryModelUnloadRequest>,
    ) -> Res<pb::RepositoryModelUnloadResponse> {
        Err(Status::unimplemented("anchor"))
    }
}
