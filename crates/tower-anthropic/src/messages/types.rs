//! Serde types of the Messages API. Unknown fields and unknown content blocks round-trip.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The body of `POST /v1/messages`.
///
/// ```
/// use tower_anthropic::messages::CreateMessageRequest;
/// let req = CreateMessageRequest::new("claude-sonnet-4-6", 1024).user("Hello, Claude");
/// assert_eq!(req.messages.len(), 1);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateMessageRequest {
    /// The model, e.g. `claude-sonnet-4-6`.
    pub model: String,
    /// Upper bound on output tokens.
    pub max_tokens: u32,
    /// The conversation so far, starting with a user turn.
    pub messages: Vec<MessageParam>,
    /// System prompt, as a string or text blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<Content>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Top-k sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    /// Custom stop sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    /// Request metadata (`user_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    /// Tools the model may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// How the model should use the tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Set by the streaming call; leave `None` for `create`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Any other field (new API features, `thinking`, `service_tier`, ...), sent as is.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl CreateMessageRequest {
    /// A request with no messages yet.
    pub fn new(model: impl Into<String>, max_tokens: u32) -> Self {
        Self {
            model: model.into(),
            max_tokens,
            messages: Vec::new(),
            system: None,
            temperature: None,
            top_p: None,
            top_k: None,
            stop_sequences: None,
            metadata: None,
            tools: None,
            tool_choice: None,
            stream: None,
            extra: Map::new(),
        }
    }

    /// Appends a user turn with text.
    pub fn user(mut self, text: impl Into<String>) -> Self {
        self.messages.push(MessageParam {
            role: Role::User,
            content: Content::Text(text.into()),
        });
        self
    }

    /// Appends an assistant turn with text.
    pub fn assistant(mut self, text: impl Into<String>) -> Self {
        self.messages.push(MessageParam {
            role: Role::Assistant,
            content: Content::Text(text.into()),
        });
        self
    }

    /// Sets the system prompt.
    pub fn system(mut self, text: impl Into<String>) -> Self {
        self.system = Some(Content::Text(text.into()));
        self
    }

    /// Appends a turn made of content blocks (images, documents, tool results, ...).
    pub fn message(mut self, role: Role, blocks: Vec<ContentBlock>) -> Self {
        self.messages.push(MessageParam {
            role,
            content: Content::Blocks(blocks),
        });
        self
    }

    /// Appends a user turn with an image (base64 `data` of `media_type`, e.g. `image/png`)
    /// and a question about it.
    pub fn user_image(
        self,
        media_type: &str,
        data: impl Into<String>,
        text: impl Into<String>,
    ) -> Self {
        let image = ContentBlock::Image {
            source: serde_json::json!({"type": "base64", "media_type": media_type, "data": data.into()}),
        };
        self.message(Role::User, vec![image, ContentBlock::text(text)])
    }

    /// Appends a user turn with a PDF document (base64 `data`) and a question about it.
    pub fn user_document(self, data: impl Into<String>, text: impl Into<String>) -> Self {
        let doc = ContentBlock::Unknown(serde_json::json!({"type": "document", "source":
            {"type": "base64", "media_type": "application/pdf", "data": data.into()}}));
        self.message(Role::User, vec![doc, ContentBlock::text(text)])
    }

    /// Appends the assistant's turn of `answer` (its text and tool calls, as the API sent
    /// them), to continue a conversation or answer its tool calls.
    pub fn assistant_message(self, answer: &Message) -> Self {
        self.message(Role::Assistant, answer.content.clone())
    }

    /// Answers the tool call `tool_use_id` with `result` (a string or blocks as JSON);
    /// `is_error` says the tool failed. The results of one answer's calls go in one user
    /// turn, as the API expects: a result following another result joins its turn.
    pub fn tool_result(
        mut self,
        tool_use_id: impl Into<String>,
        result: Value,
        is_error: bool,
    ) -> Self {
        let block = ContentBlock::ToolResult {
            tool_use_id: tool_use_id.into(),
            content: Some(result),
            is_error: is_error.then_some(true),
        };
        if let Some(MessageParam {
            role: Role::User,
            content: Content::Blocks(blocks),
        }) = self.messages.last_mut()
        {
            if !blocks.is_empty()
                && blocks
                    .iter()
                    .all(|b| matches!(b, ContentBlock::ToolResult { .. }))
            {
                blocks.push(block);
                return self;
            }
        }
        self.message(Role::User, vec![block])
    }

    /// Sampling temperature (0 to 1).
    pub fn temperature(mut self, t: f32) -> Self {
        self.temperature = Some(t);
        self
    }

    /// Nucleus sampling.
    pub fn top_p(mut self, p: f32) -> Self {
        self.top_p = Some(p);
        self
    }

    /// Top-k sampling.
    pub fn top_k(mut self, k: u32) -> Self {
        self.top_k = Some(k);
        self
    }

    /// Custom stop sequences.
    pub fn stop_sequences<I, S>(mut self, seqs: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.stop_sequences = Some(seqs.into_iter().map(Into::into).collect());
        self
    }

    /// An opaque id of the end user (`metadata.user_id`).
    pub fn user_id(mut self, id: impl Into<String>) -> Self {
        self.metadata = Some(Metadata {
            user_id: Some(id.into()),
        });
        self
    }

    /// Offers a tool (repeatable).
    pub fn tool(mut self, tool: Tool) -> Self {
        self.tools.get_or_insert_with(Vec::new).push(tool);
        self
    }

    /// How the model should use the tools.
    pub fn tool_choice(mut self, choice: ToolChoice) -> Self {
        self.tool_choice = Some(choice);
        self
    }

    /// Extended thinking with this many tokens of budget (below `max_tokens`).
    pub fn thinking(mut self, budget_tokens: u32) -> Self {
        self.extra.insert(
            "thinking".into(),
            serde_json::json!({"type": "enabled", "budget_tokens": budget_tokens}),
        );
        self
    }
}

impl Tool {
    /// A tool with a name, a description and the JSON Schema of its input.
    pub fn new(
        name: impl Into<String>,
        description: impl Into<String>,
        input_schema: Value,
    ) -> Self {
        Self {
            name: name.into(),
            description: Some(description.into()),
            input_schema,
            extra: Map::new(),
        }
    }
}

impl Message {
    /// The tool calls of the answer: (id, name, input).
    pub fn tool_calls(&self) -> impl Iterator<Item = (&str, &str, &Value)> {
        self.content.iter().filter_map(|b| match b {
            ContentBlock::ToolUse { id, name, input } => Some((id.as_str(), name.as_str(), input)),
            _ => None,
        })
    }
}

/// Who speaks a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The user.
    User,
    /// The model.
    Assistant,
}

/// One turn of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageParam {
    /// Who speaks.
    pub role: Role,
    /// What is said.
    pub content: Content,
}

/// Content given as a plain string or as blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// A plain string.
    Text(String),
    /// Content blocks (text, images, tool use and results, ...).
    Blocks(Vec<ContentBlock>),
}

/// A content block, in a request or a response. Block types this crate does not know are
/// kept whole as [`ContentBlock::Unknown`] and sent back as they came.
///
/// Decoded in one pass over the block's keys (see `block_de`), with the result the
/// attributes below give.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ContentBlock {
    /// Text.
    Text {
        /// The text.
        text: String,
        /// Citations, when the API sends them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        citations: Option<Vec<Value>>,
    },
    /// An image (request side); `source` as the API takes it.
    Image {
        /// `{"type": "base64", "media_type": ..., "data": ...}` or `{"type": "url", ...}`.
        source: Value,
    },
    /// The model calls a tool.
    ToolUse {
        /// Id to answer with a `tool_result`.
        id: String,
        /// Tool name.
        name: String,
        /// Arguments, as JSON.
        input: Value,
    },
    /// The answer to a tool call (request side).
    ToolResult {
        /// The `tool_use` id answered.
        tool_use_id: String,
        /// The result: a string or blocks.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<Value>,
        /// Whether the tool failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        is_error: Option<bool>,
    },
    /// Extended thinking.
    Thinking {
        /// The thinking text.
        thinking: String,
        /// Signature to send back unchanged.
        signature: String,
    },
    /// Redacted thinking.
    RedactedThinking {
        /// Opaque data to send back unchanged.
        data: String,
    },
    /// A block of a type this crate does not know, kept whole.
    #[serde(untagged)]
    Unknown(Value),
}

impl ContentBlock {
    /// A text block.
    pub fn text(text: impl Into<String>) -> Self {
        ContentBlock::Text {
            text: text.into(),
            citations: None,
        }
    }
}

/// Request metadata.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// An opaque id of the end user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

/// A tool definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// Name the model calls it by.
    pub name: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of its input.
    pub input_schema: Value,
    /// Other fields (`cache_control`, server tool types, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// How the model should use tools.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolChoice {
    /// The model decides.
    Auto {
        /// At most one tool call.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    /// The model must use some tool.
    Any {
        /// At most one tool call.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    /// The model must use this tool.
    Tool {
        /// The tool's name.
        name: String,
        /// At most one tool call.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    /// No tools.
    None,
}

/// Why generation stopped. New reasons arrive as [`StopReason::Other`]. (Decoded as the
/// attributes below say, a string read in place: see `block_de`.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StopReason {
    /// The model finished its turn.
    EndTurn,
    /// `max_tokens` was reached.
    MaxTokens,
    /// A stop sequence was generated.
    StopSequence,
    /// The model called a tool.
    ToolUse,
    /// A long turn was paused.
    PauseTurn,
    /// The model declined.
    Refusal,
    /// A reason this crate does not know.
    #[serde(untagged)]
    Other(String),
}

/// Token usage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Input tokens.
    #[serde(default)]
    pub input_tokens: u64,
    /// Output tokens.
    #[serde(default)]
    pub output_tokens: u64,
    /// Input tokens written to the cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    /// Input tokens read from the cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
    /// Service tier used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<String>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A message from the model: the response of `POST /v1/messages`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `msg_...`.
    pub id: String,
    /// Always `message`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Always `assistant`.
    pub role: Role,
    /// The model that answered.
    pub model: String,
    /// The content blocks.
    pub content: Vec<ContentBlock>,
    /// Why generation stopped.
    pub stop_reason: Option<StopReason>,
    /// Which stop sequence, if one stopped it.
    #[serde(default)]
    pub stop_sequence: Option<String>,
    /// Token usage.
    pub usage: Usage,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Message {
    /// A message not made by the API: one text block, `end_turn`, no usage, an id starting
    /// `canned_`. For stand-in answers ([`crate::degrade`]) and tests.
    pub fn canned(model: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            id: "canned_0".to_owned(),
            kind: "message".to_owned(),
            role: Role::Assistant,
            model: model.into(),
            content: vec![ContentBlock::Text {
                text: text.into(),
                citations: None,
            }],
            stop_reason: Some(StopReason::EndTurn),
            stop_sequence: None,
            usage: Usage::default(),
            extra: Map::new(),
        }
    }

    /// All text blocks joined.
    pub fn text(&self) -> String {
        self.content
            .iter()
            .filter_map(|b| match b {
                ContentBlock::Text { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// The body of `POST /v1/messages/count_tokens`' answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenCount {
    /// Input tokens the request would use.
    pub input_tokens: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_serializes_and_unknown_fields_round_trip() {
        let mut req = CreateMessageRequest::new("claude-m", 10)
            .user("hi")
            .system("be brief");
        req.tool_choice = Some(ToolChoice::Tool {
            name: "t".into(),
            disable_parallel_tool_use: None,
        });
        req.extra.insert(
            "thinking".into(),
            json!({"type": "enabled", "budget_tokens": 2000}),
        );
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(v["messages"][0], json!({"role": "user", "content": "hi"}));
        assert_eq!(v["system"], "be brief");
        assert_eq!(v["tool_choice"], json!({"type": "tool", "name": "t"}));
        assert_eq!(v["thinking"]["budget_tokens"], 2000);
        assert!(v.get("temperature").is_none());
        let back: CreateMessageRequest = serde_json::from_value(v).unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn message_with_all_block_kinds_and_unknowns() {
        let v = json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-m",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "text", "text": "Hello"},
                {"type": "tool_use", "id": "tu_1", "name": "get", "input": {"q": 1}},
                {"type": "brand_new_block", "payload": [1, 2]}
            ],
            "stop_reason": "something_new", "stop_sequence": null,
            "usage": {"input_tokens": 3, "output_tokens": 4, "cache_read_input_tokens": 2, "server_tool_use": {"web_search_requests": 1}},
            "container": null
        });
        let m: Message = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(m.text(), "Hello");
        assert!(matches!(&m.content[2], ContentBlock::ToolUse { name, .. } if name == "get"));
        assert_eq!(
            m.content[3],
            ContentBlock::Unknown(json!({"type": "brand_new_block", "payload": [1, 2]}))
        );
        assert_eq!(
            m.stop_reason,
            Some(StopReason::Other("something_new".into()))
        );
        assert_eq!(m.usage.cache_read_input_tokens, Some(2));
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            v,
            "everything round-trips"
        );
        let end: StopReason = serde_json::from_value(json!("end_turn")).unwrap();
        assert_eq!(end, StopReason::EndTurn);
    }
}

/// The body of `POST /v1/messages/count_tokens`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountTokensRequest {
    /// The model.
    pub model: String,
    /// The conversation.
    pub messages: Vec<MessageParam>,
    /// System prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<Content>,
    /// Tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// Tool choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Other fields, sent as is.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl From<&CreateMessageRequest> for CountTokensRequest {
    fn from(r: &CreateMessageRequest) -> Self {
        Self {
            model: r.model.clone(),
            messages: r.messages.clone(),
            system: r.system.clone(),
            tools: r.tools.clone(),
            tool_choice: r.tool_choice.clone(),
            extra: r.extra.clone(),
        }
    }
}

impl From<CreateMessageRequest> for CountTokensRequest {
    fn from(r: CreateMessageRequest) -> Self {
        CountTokensRequest::from(&r)
    }
}
