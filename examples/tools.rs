//! Typed tool use: tools declared with a JSON schema, the model's calls parsed into Rust
//! types, the results sent back, until the model answers in text. The first turn is
//! streamed (the call's input arrives as `input_json_delta` pieces and is assembled).
//!
//! A call whose input does not parse into its type is answered with `is_error: true` and the
//! parse error, so the model can correct itself, rather than failing the conversation.
//!
//! On the embedded mock (no key) the model calls the first tool it is offered, with inputs
//! made from the schema, whenever tools are allowed: it calls again until the last turn,
//! which forbids tools (`ToolChoice::None`). With `ANTHROPIC_API_KEY` set it talks to the
//! real API.
//!
//! ```text
//! cargo run --example tools
//! ```

use anthropic_mock::{MockConfig, MockServer};
use serde::Deserialize;
use serde_json::{Value, json};
use tower_anthropic::Client;
use tower_anthropic::messages::{CreateMessageRequest, Message, StopReason, Tool, ToolChoice};

/// `get_weather`'s input.
#[derive(Debug, Deserialize)]
struct Weather {
    city: String,
    unit: Unit,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Unit {
    Celsius,
    Fahrenheit,
}

/// `convert_currency`'s input.
#[derive(Debug, Deserialize)]
struct Convert {
    amount: f64,
    from: String,
    to: String,
}

/// A tool call, typed.
#[derive(Debug)]
enum Call {
    Weather(Weather),
    Convert(Convert),
}

impl Call {
    /// The call named `name` with `input`, or why it cannot be made.
    fn parse(name: &str, input: &Value) -> Result<Call, String> {
        let parsed = match name {
            "get_weather" => serde_json::from_value(input.clone()).map(Call::Weather),
            "convert_currency" => serde_json::from_value(input.clone()).map(Call::Convert),
            other => return Err(format!("no tool named {other}")),
        };
        parsed.map_err(|e| format!("invalid input for {name}: {e}"))
    }

    /// Runs the tool (here: made-up answers).
    fn run(&self) -> Value {
        match self {
            Call::Weather(w) => {
                let (t, u) = match w.unit {
                    Unit::Celsius => (18, "C"),
                    Unit::Fahrenheit => (64, "F"),
                };
                json!(format!("{t} {u} and sunny in {}", w.city))
            }
            Call::Convert(c) => {
                json!({"amount": c.amount * 0.92, "currency": c.to, "from": c.from})
            }
        }
    }
}

fn tools() -> [Tool; 2] {
    [
        Tool::new(
            "get_weather",
            "The current weather in a city",
            json!({"type": "object", "required": ["city", "unit"], "properties": {
                "city": {"type": "string", "description": "The city, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}}),
        ),
        Tool::new(
            "convert_currency",
            "Converts an amount between currencies",
            json!({"type": "object", "required": ["amount", "from", "to"], "properties": {
                "amount": {"type": "number"},
                "from": {"type": "string"}, "to": {"type": "string"}}}),
        ),
    ]
}

/// At most this many answers with tool calls; the last turn asks for text only.
const MAX_TOOL_TURNS: usize = 3;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (client, _mock) = match Client::from_env() {
        Ok(c) => (c, None),
        Err(_) => {
            let mock = MockServer::start(MockConfig::default()).await?;
            let c = Client::builder()
                .api_key("sk-ant-mock")
                .base_url(mock.url())
                .build()?;
            (c, Some(mock))
        }
    };
    let model = std::env::var("ANTHROPIC_MODEL").unwrap_or_else(|_| "claude-sonnet-4-6".into());
    let mut req = CreateMessageRequest::new(model, 512)
        .system("Use the tools to answer.")
        .user("What is the weather in Paris, in celsius?");
    for t in tools() {
        req = req.tool(t);
    }

    // The first turn streamed: the tool call's input is assembled from its pieces.
    let mut stream = client.messages().stream(req.clone()).await?;
    let mut pieces = 0;
    while let Some(event) = stream.next().await {
        if let tower_anthropic::stream::StreamEvent::ContentBlockDelta { delta, .. } = event? {
            if matches!(delta, tower_anthropic::stream::Delta::InputJsonDelta { .. }) {
                pieces += 1;
            }
        }
    }
    let mut answer: Message = stream.message().cloned().ok_or("the stream ended early")?;
    println!(
        "turn 1 (streamed, {pieces} input pieces): {}",
        summary(&answer)
    );

    let mut turn = 1;
    while answer.stop_reason == Some(StopReason::ToolUse) {
        req = req.assistant_message(&answer);
        for (id, name, input) in answer.tool_calls() {
            let (result, is_error) = match Call::parse(name, input) {
                Ok(call) => {
                    println!("  {call:?}");
                    (call.run(), false)
                }
                Err(why) => (json!(why), true),
            };
            println!("  -> {result}{}", if is_error { " (error)" } else { "" });
            req = req.tool_result(id, result, is_error);
        }
        turn += 1;
        if turn > MAX_TOOL_TURNS {
            req = req.tool_choice(ToolChoice::None);
        }
        answer = client.messages().create(req.clone()).await?.into_inner();
        println!("turn {turn}: {}", summary(&answer));
    }
    println!("answer: {}", answer.text());
    Ok(())
}

fn summary(m: &Message) -> String {
    let calls: Vec<&str> = m.tool_calls().map(|(_, name, _)| name).collect();
    format!(
        "stop {:?}, {} tool call(s) {calls:?}",
        m.stop_reason
            .as_ref()
            .map_or("none".into(), |r| format!("{r:?}")),
        calls.len()
    )
}
