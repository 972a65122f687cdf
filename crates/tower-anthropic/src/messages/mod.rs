//! The Messages API: serde types and the typed service over any HTTP stack.

mod service;
mod types;

pub use service::{
    ApiRequest, ApiResponse, Attempts, DEFAULT_MAX_RESPONSE_BODY, MessagesService, ResponseFuture,
};
pub use types::{
    Content, ContentBlock, CountTokensRequest, CreateMessageRequest, Message, MessageParam,
    Metadata, Role, StopReason, TokenCount, Tool, ToolChoice, Usage,
};
