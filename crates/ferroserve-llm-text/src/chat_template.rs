//! [`ChatTemplate`]: renders a chat the way transformers' `apply_chat_template`
//! does — Jinja with `trim_blocks` and `lstrip_blocks`, loop controls, Python
//! string/dict methods, `raise_exception`, transformers' `tojson` and
//! `strftime_now`, and `continue_final_message` cut after the last message.

use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::gguf_file::Content;
use ferroserve_core::generate::ChatTemplateOptions;
use minijinja::value::{Kwargs, Value as JValue};
use minijinja::{Environment, Error as JError, ErrorKind};
use serde_json::{Map, Value};

use crate::error::{read_json_opt, read_to_string, TextError};
use crate::pyjson::{dumps, DumpOptions};

/// A compiled chat template (cheap to clone).
#[derive(Clone)]
pub struct ChatTemplate {
    env: Arc<Environment<'static>>,
    /// A `tool_use` variant (named templates), used when tools are given.
    has_tool_use: bool,
    source: Arc<str>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source_len", &self.source.len())
            .field("has_tool_use", &self.has_tool_use)
            .finish()
    }
}

fn template_error(e: JError) -> TextError {
    // Show the template's own message for raise_exception.
    let mut msg = e.to_string();
    if let Some(detail) = e.detail() {
        if e.kind() == ErrorKind::InvalidOperation && !msg.contains(detail) {
            msg = format!("{msg}: {detail}");
        }
    }
    TextError::Template(msg)
}

/// transformers' `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`.
fn tojson(value: JValue, kwargs: Kwargs) -> Result<JValue, JError> {
    let json: Value = serde_json::to_value(&value)
        .map_err(|e| JError::new(ErrorKind::BadSerialization, e.to_string()))?;
    let mut opts = DumpOptions::default();
    if let Some(v) = kwargs.get::<Option<JValue>>("indent")? {
        if let Some(n) = v.as_i64() {
            opts.indent = Some(" ".repeat(usize::try_from(n).unwrap_or(0)));
        } else if let Some(s) = v.as_str() {
            opts.indent = Some(s.to_string());
        }
    }
    if let Some(v) = kwargs.get::<Option<bool>>("ensure_ascii")? {
        opts.ensure_ascii = v;
    }
    if let Some(v) = kwargs.get::<Option<bool>>("sort_keys")? {
        opts.sort_keys = v;
    }
    if let Some(v) = kwargs.get::<Option<JValue>>("separators")? {
        let parts: Vec<String> = v
            .try_iter()?
            .map(|p| p.as_str().unwrap_or_default().to_string())
            .collect();
        if let [a, b] = parts.as_slice() {
            opts.separators = Some((a.clone(), b.clone()));
        }
    }
    kwargs.assert_all_used()?;
    Ok(JValue::from(dumps(&json, &opts)))
}

fn build_env(sources: &[(String, String)]) -> Result<Environment<'static>, TextError> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(false);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", |msg: String| -> Result<JValue, JError> {
        Err(JError::new(ErrorKind::InvalidOperation, msg))
    });
    env.add_function("strftime_now", |fmt: String| -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        crate::strftime::strftime(&fmt, now)
    });
    env.add_filter("tojson", tojson);
    for (name, src) in sources {
        env.add_template_owned(name.clone(), src.clone())
            .map_err(template_error)?;
    }
    Ok(env)
}

impl ChatTemplate {
    /// Compiles a template source.
    pub fn new(source: &str) -> Result<Self, TextError> {
        let env = build_env(&[("default".to_string(), source.to_string())])?;
        Ok(ChatTemplate {
            env: Arc::new(env),
            has_tool_use: false,
            source: source.into(),
        })
    }

    /// From a `chat_template` value of tokenizer_config.json: a string, or a
    /// list of `{name, template}` (`default` is used, `tool_use` when tools are given).
    pub fn from_config_value(v: &Value) -> Result<Self, TextError> {
        match v {
            Value::String(s) => Self::new(s),
            Value::Array(list) => {
                let mut sources = Vec::new();
                for item in list {
                    let (Some(name), Some(t)) = (
                        item.get("name").and_then(Value::as_str),
                        item.get("template").and_then(Value::as_str),
                    ) else {
                        return Err(TextError::Template(
                            "a named chat template lacks name or template".into(),
                        ));
                    };
                    sources.push((name.to_string(), t.to_string()));
                }
                let default = sources
                    .iter()
                    .find(|(n, _)| n == "default")
                    .map(|(_, s)| s.clone())
                    .ok_or_else(|| TextError::Template("no template named \"default\"".into()))?;
                let has_tool_use = sources.iter().any(|(n, _)| n == "tool_use");
                Ok(ChatTemplate {
                    env: Arc::new(build_env(&sources)?),
                    has_tool_use,
                    source: default.into(),
                })
            }
            _ => Err(TextError::Template(
                "chat_template is neither a string nor a list".into(),
            )),
        }
    }

    /// The template of a HuggingFace model folder: `chat_template.jinja`,
    /// else `chat_template` in tokenizer_config.json, else chat_template.json.
    /// `Ok(None)` when there is none.
    pub fn from_hf_dir(dir: &Path) -> Result<Option<Self>, TextError> {
        let jinja = dir.join("chat_template.jinja");
        if jinja.is_file() {
            return Self::new(&read_to_string(&jinja)?).map(Some);
        }
        if let Some(tc) = read_json_opt(&dir.join("tokenizer_config.json"))? {
            if let Some(v) = tc.get("chat_template").filter(|v| !v.is_null()) {
                return Self::from_config_value(v).map(Some);
            }
        }
        if let Some(ct) = read_json_opt(&dir.join("chat_template.json"))? {
            if let Some(v) = ct.get("chat_template").filter(|v| !v.is_null()) {
                return Self::from_config_value(v).map(Some);
            }
        }
        Ok(None)
    }

    /// The template in GGUF metadata (`tokenizer.chat_template`); `Ok(None)` when absent.
    pub fn from_gguf(content: &Content) -> Result<Option<Self>, TextError> {
        match crate::gguf_vocab::meta_str(content, "tokenizer.chat_template") {
            Some(s) => Self::new(s).map(Some),
            None => Ok(None),
        }
    }

    /// The template's source text (the default one).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders `messages` (OpenAI-style message objects). `vars` holds
    /// template variables such as `bos_token`/`eos_token` (see
    /// [`special_token_vars`]); `options.extra` overrides them. When
    /// `options.template` is set, that template is rendered instead.
    pub fn render(
        &self,
        messages: &[Value],
        options: &ChatTemplateOptions,
        vars: &Map<String, Value>,
    ) -> Result<String, TextError> {
        if let Some(t) = &options.template {
            let one_off = ChatTemplate::new(t)?;
            let opts = ChatTemplateOptions {
                template: None,
                ..options.clone()
            };
            return one_off.render(messages, &opts, vars);
        }
        if options.continue_final_message && options.add_generation_prompt {
            return Err(TextError::Template(
                "continue_final_message and add_generation_prompt are not compatible".into(),
            ));
        }
        let mut ctx: Map<String, Value> = vars.clone();
        for (k, v) in &options.extra {
            ctx.insert(k.clone(), v.clone());
        }
        ctx.insert("messages".into(), Value::Array(messages.to_vec()));
        ctx.insert(
            "add_generation_prompt".into(),
            Value::Bool(options.add_generation_prompt),
        );
        ctx.insert("tools".into(), options.tools.clone().unwrap_or(Value::Null));
        ctx.entry("documents").or_insert(Value::Null);
        let name = if self.has_tool_use && options.tools.is_some() {
            "tool_use"
        } else {
            "default"
        };
        let tmpl = self.env.get_template(name).map_err(template_error)?;
        let rendered = tmpl
            .render(JValue::from_serialize(&ctx))
            .map_err(template_error)?;
        if options.continue_final_message {
            return cut_after_final_message(rendered, messages);
        }
        Ok(rendered)
    }
}

/// Template variables from the tokenizer's special tokens (`bos_token`, `eos_token`).
pub fn special_token_vars(
    bos_token: Option<String>,
    eos_token: Option<String>,
) -> Map<String, Value> {
    let mut m = Map::new();
    if let Some(b) = bos_token {
        m.insert("bos_token".into(), Value::String(b));
    }
    if let Some(e) = eos_token {
        m.insert("eos_token".into(), Value::String(e));
    }
    m
}

/// transformers' `continue_final_message`: cut the render right after the
/// final message's content (keeping the content's own trailing whitespace
/// only where the template kept it).
fn cut_after_final_message(rendered: String, messages: &[Value]) -> Result<String, TextError> {
    let content = messages.last().and_then(|m| m.get("content"));
    let final_message: String = match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .rev()
            .find_map(|b| b.get("text").and_then(Value::as_str))
            .map(str::to_string)
            .ok_or_else(|| {
                TextError::Template(
                    "continue_final_message is set but the final message has no text".into(),
                )
            })?,
        _ => {
            return Err(TextError::Template(
                "continue_final_message is set but there is no final message content".into(),
            ))
        }
    };
    let stripped = final_message.trim();
    let Some(loc) = rendered.rfind(stripped) else {
        return Err(TextError::Template(
            "continue_final_message is set but the final message does not appear in the rendered chat".into(),
        ));
    };
    let lstripped_len = final_message.trim_start().len();
    let end = if rendered.get(loc..loc + lstripped_len) == Some(final_message.as_str()) {
        loc + lstripped_len
    } else {
        loc + stripped.len()
    };
    Ok(rendered.get(..end).unwrap_or(&rendered).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msgs(v: Value) -> Vec<Value> {
        v.as_array().cloned().unwrap_or_default()
    }

    fn render(src: &str, messages: Value, opts: ChatTemplateOptions) -> Result<String, TextError> {
        let vars = special_token_vars(Some("<s>".into()), Some("</s>".into()));
        ChatTemplate::new(src)?.render(&msgs(messages), &opts, &vars)
    }

    #[test]
    fn trim_and_lstrip_blocks_and_python_methods() {
        let src = "{{ bos_token }}\n{% for m in messages %}\n    {% if loop.index0 > 5 %}{% break %}{% endif %}\n[{{ m['role'].title() }}] {{ m.content.strip() }}{% if m.content.strip().startswith('x') %}!{% endif %}\n{% endfor %}\n{% if add_generation_prompt %}[Assistant]{% endif %}\n";
        let out = render(
            src,
            json!([{"role": "user", "content": "  xhi "}, {"role": "assistant", "content": "yo"}]),
            ChatTemplateOptions {
                add_generation_prompt: true,
                ..Default::default()
            },
        )
        .unwrap();
        // As Python's Jinja2 renders it (checked with jinja2 3.1.6).
        assert_eq!(out, "<s>\n[User] xhi![Assistant] yo[Assistant]");
    }

    #[test]
    fn raise_exception_carries_the_message() {
        let src = "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}ok";
        let err = render(
            src,
            json!([{"role": "system", "content": "s"}]),
            Default::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("System role not supported"),
            "{err}"
        );
        assert_eq!(
            render(
                src,
                json!([{"role": "user", "content": "u"}]),
                Default::default()
            )
            .unwrap(),
            "ok"
        );
    }

    #[test]
    fn tojson_is_python_json_dumps() {
        let src = "{{ tools | tojson }}|{{ tools[0] | tojson(indent=2) }}|{{ 'é' | tojson }}|{{ extra_var }}";
        let tools = json!([{"type": "function", "function": {"name": "f", "parameters": {"z": 1, "a": [1.5, true, null]}}}]);
        let mut extra = Map::new();
        extra.insert("extra_var".into(), json!("X"));
        let out = render(
            src,
            json!([]),
            ChatTemplateOptions {
                tools: Some(tools),
                extra,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            out,
            "[{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {\"z\": 1, \"a\": [1.5, true, null]}}}]|{\n  \"type\": \"function\",\n  \"function\": {\n    \"name\": \"f\",\n    \"parameters\": {\n      \"z\": 1,\n      \"a\": [\n        1.5,\n        true,\n        null\n      ]\n    }\n  }\n}|\"é\"|X"
        );
    }

    #[test]
    fn tools_is_none_when_absent_and_strftime_now_works() {
        let src = "{% if tools is none %}none{% endif %}{{ strftime_now('%Y') | length }}";
        assert_eq!(render(src, json!([]), Default::default()).unwrap(), "none4");
    }

    #[test]
    fn continue_final_message_cuts_after_the_content() {
        let src =
            "{% for m in messages %}<{{ m.role }}>{{ m.content }}</{{ m.role }}>\n{% endfor %}";
        let m =
            json!([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Sure, "}]);
        let opts = ChatTemplateOptions {
            continue_final_message: true,
            ..Default::default()
        };
        assert_eq!(
            render(src, m.clone(), opts.clone()).unwrap(),
            "<user>hi</user>\n<assistant>Sure, "
        );
        // A template that trims the content: cut after the stripped content.
        let trimming = "{% for m in messages %}<{{ m.role }}>{{ m.content | trim }}</{{ m.role }}>{% endfor %}";
        assert_eq!(
            render(trimming, m, opts.clone()).unwrap(),
            "<user>hi</user><assistant>Sure,"
        );
        let both = ChatTemplateOptions {
            add_generation_prompt: true,
            ..opts
        };
        assert!(render(src, json!([{"role": "assistant", "content": "a"}]), both).is_err());
    }

    #[test]
    fn named_templates_and_override() {
        let cfg = json!([{"name": "default", "template": "D{{ messages | length }}"},
                         {"name": "tool_use", "template": "T{{ tools | length }}"}]);
        let t = ChatTemplate::from_config_value(&cfg).unwrap();
        let vars = Map::new();
        assert_eq!(t.render(&[], &Default::default(), &vars).unwrap(), "D0");
        let with_tools = ChatTemplateOptions {
            tools: Some(json!([1, 2])),
            ..Default::default()
        };
        assert_eq!(t.render(&[], &with_tools, &vars).unwrap(), "T2");
        let custom = ChatTemplateOptions {
            template: Some("C".into()),
            ..Default::default()
        };
        assert_eq!(t.render(&[], &custom, &vars).unwrap(), "C");
        assert!(ChatTemplate::new("{% if %}").is_err());
    }
}
