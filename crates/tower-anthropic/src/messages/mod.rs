//! The Messages API: serde types and the typed service over any HTTP stack.

mod block_de;
mod service;
mod types;

pub use service::{ApiRequest, ApiResponse, MessagesService, ResponseFuture, StreamRequest};
pub(crate) use service::{MAX_EVENT_JSON_VALUES, decode};
pub use types::{
    Content, ContentBlock, CountTokensRequest, CreateMessageRequest, Message, MessageParam,
    Metadata, Role, StopReason, TokenCount, Tool, ToolChoice, Usage,
};
