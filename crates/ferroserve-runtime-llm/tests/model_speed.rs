//! Rough decode-speed check of the batched forward pass on a random
//! Llama-shaped model (ignored by default: timings, not correctness).
//! `cargo test --release -p ferroserve-runtime-llm --test model_speed -- --ignored --nocapture`

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use ferroserve_runtime_llm::model::{DecoderModel, SeqInput};

#[test]
#[ignore]
fn decode_speed_batch_1_vs_16() {
    let (hidden, inter, layers, heads, kv, vocab) =
        (512usize, 1408usize, 4usize, 8usize, 2usize, 8000usize);
    let hd = hidden / heads;
    let dir = std::env::temp_dir().join(format!("ferroserve-speed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dev = Device::Cpu;
    let r = |shape: &[usize]| Tensor::randn(0f32, 0.02, shape, &dev).unwrap();
    let mut t: HashMap<String, Tensor> = HashMap::new();
    t.insert("model.embed_tokens.weight".into(), r(&[vocab, hidden]));
    t.insert(
        "model.norm.weight".into(),
        Tensor::ones(hidden, DType::F32, &dev).unwrap(),
    );
    t.insert("lm_head.weight".into(), r(&[vocab, hidden]));
    for i in 0..layers {
        let p = format!("model.layers.{i}");
        t.insert(
            format!("{p}.self_attn.q_proj.weight"),
            r(&[heads * hd, hidden]),
        );
        t.insert(
            format!("{p}.self_attn.k_proj.weight"),
            r(&[kv * hd, hidden]),
        );
        t.insert(
            format!("{p}.self_attn.v_proj.weight"),
            r(&[kv * hd, hidden]),
        );
        t.insert(
            format!("{p}.self_attn.o_proj.weight"),
            r(&[hidden, heads * hd]),
        );
        t.insert(format!("{p}.mlp.gate_proj.weight"), r(&[inter, hidden]));
        t.insert(format!("{p}.mlp.up_proj.weight"), r(&[inter, hidden]));
        t.insert(format!("{p}.mlp.down_proj.weight"), r(&[hidden, inter]));
        t.insert(
            format!("{p}.input_layernorm.weight"),
            Tensor::ones(hidden, DType::F32, &dev).unwrap(),
        );
        t.insert(
            format!("{p}.post_attention_layernorm.weight"),
            Tensor::ones(hidden, DType::F32, &dev).unwrap(),
        );
    }
    candle_core::safetensors::save(&t, dir.join("model.safetensors")).unwrap();
    let cfg = serde_json::json!({"model_type": "llama", "hidden_size": hidden, "intermediate_size": inter,
        "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv,
        "vocab_size": vocab, "rms_norm_eps": 1e-5, "max_position_embeddings": 4096});
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let model = DecoderModel::load_hf(&dir, DType::F32, &dev).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    let prompt: Vec<u32> = (0..128).map(|i| (i * 7 % vocab) as u32).collect();
    for n in [1usize, 4, 16] {
        let mut caches: Vec<_> = (0..n).map(|_| model.new_cache()).collect();
        let start = Instant::now();
        {
            let mut batch: Vec<SeqInput> = caches
                .iter_mut()
                .map(|c| SeqInput {
                    cache: c,
                    tokens: &prompt,
                    want_logits: true,
                })
                .collect();
            model.forward(&mut batch).unwrap();
        }
        let prefill = start.elapsed().as_secs_f64();
        let steps = 32;
        let tok = [5u32];
        let start = Instant::now();
        for _ in 0..steps {
            let mut batch: Vec<SeqInput> = caches
                .iter_mut()
                .map(|c| SeqInput {
                    cache: c,
                    tokens: &tok,
                    want_logits: true,
                })
                .collect();
            model.forward(&mut batch).unwrap();
        }
        let dt = start.elapsed().as_secs_f64();
        eprintln!(
            "batch {n:2}: prefill {:.0} tok/s, decode {:.2} ms/step, {:.0} tok/s aggregate",
            (n * prompt.len()) as f64 / prefill,
            dt * 1e3 / steps as f64,
            (n * steps) as f64 / dt
        );
    }
}
