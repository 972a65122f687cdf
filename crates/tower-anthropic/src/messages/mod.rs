//! The Messages API: serde types and the typed service over any HTTP stack.

mod service;
mod types;

pub(crate) use service::copy_request;
pub use service::{ApiRequest, ApiResponse, MessagesService, ResponseFuture, StreamRequest};
pub use types::{
    Content, ContentBlock, CountTokensRequest, CreateMessageRequest, Message, MessageParam,
    Metadata, Role, StopReason, TokenCount, Tool, ToolChoice, Usage,
};
