use serde::{Deserialize, Serialize};

use crate::PromptError;

/// Who wrote a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// System instructions.
    System,
    /// Developer instructions (OpenAI's newer name for system).
    Developer,
    /// The human asking for media.
    User,
    /// The model's earlier answers.
    Assistant,
    /// Tool results.
    Tool,
    /// Any other role; never part of a media prompt.
    #[serde(other)]
    Other,
}

/// One part of a multi-part message content (`{"type": "text", "text": "…"}`, `{"type": "image_url", …}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentPart {
    /// The part's type: only `text` parts count for the prompt.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a `text` part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Every other field of the part, kept as given.
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

impl ContentPart {
    /// The image URL of an `image_url` part (`{"image_url": {"url": …}}`, or `{"image_url": "…"}`):
    /// an `http(s)` URL or a `data:` URL.
    pub fn image_url(&self) -> Option<&str> {
        if self.kind != "image_url" {
            return None;
        }
        match self.rest.get("image_url")? {
            serde_json::Value::String(url) => Some(url.as_str()),
            serde_json::Value::Object(fields) => fields.get("url")?.as_str(),
            _ => None,
        }
        .map(str::trim)
        .filter(|url| !url.is_empty())
    }

    /// An `image_url` part.
    pub fn image(url: impl Into<String>) -> Self {
        let mut rest = serde_json::Map::new();
        rest.insert("image_url".into(), serde_json::json!({ "url": url.into() }));
        ContentPart {
            kind: "image_url".into(),
            text: None,
            rest,
        }
    }

    /// A `text` part.
    pub fn text(text: impl Into<String>) -> Self {
        ContentPart {
            kind: "text".into(),
            text: Some(text.into()),
            rest: serde_json::Map::new(),
        }
    }
}

/// A message's content: a plain string or a list of typed parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// `"content": "a fox"`.
    Text(String),
    /// `"content": [{"type": "text", "text": "a fox"}, …]`.
    Parts(Vec<ContentPart>),
}

impl MessageContent {
    /// The text of this content: the string, or the `text` parts joined with `\n`.
    pub fn text(&self) -> String {
        match self {
            MessageContent::Text(text) => text.clone(),
            MessageContent::Parts(parts) => parts
                .iter()
                .filter(|p| p.kind == "text")
                .filter_map(|p| p.text.as_deref())
                .filter(|t| !t.trim().is_empty())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

/// One chat message, in the OpenAI / Hugging Face chat shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who wrote it.
    pub role: Role,
    /// What it says.
    pub content: MessageContent,
}

impl ChatMessage {
    /// A message with a string content.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        ChatMessage {
            role,
            content: MessageContent::Text(content.into()),
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        ChatMessage::new(Role::User, content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        ChatMessage::new(Role::Assistant, content)
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        ChatMessage::new(Role::System, content)
    }
}

/// The trailing run of user messages (the one [`format_prompt`] reads), oldest first.
fn trailing_user_run(messages: &[ChatMessage]) -> Vec<&ChatMessage> {
    let mut run: Vec<&ChatMessage> = messages
        .iter()
        .rev()
        .skip_while(|m| m.role != Role::User)
        .take_while(|m| m.role == Role::User)
        .collect();
    run.reverse();
    run
}

/// The image URLs of the `image_url` parts of the trailing run of user messages, in order: the images a
/// chat asks to edit or animate (the same messages whose text parts are the prompt).
pub fn chat_images(messages: &[ChatMessage]) -> Vec<String> {
    trailing_user_run(messages)
        .into_iter()
        .filter_map(|m| match &m.content {
            MessageContent::Parts(parts) => Some(parts),
            MessageContent::Text(_) => None,
        })
        .flatten()
        .filter_map(ContentPart::image_url)
        .map(str::to_owned)
        .collect()
}

/// Decides the prompt of a generation.
///
/// An explicit, non-blank `prompt` wins. Otherwise the trailing run of user messages (skipping any
/// non-user messages after it) is joined with `\n`, using text parts only; earlier turns are dropped.
/// Surrounding whitespace is trimmed. A blank result is [`PromptError::Empty`].
pub fn format_prompt(prompt: Option<&str>, messages: &[ChatMessage]) -> Result<String, PromptError> {
    if let Some(prompt) = prompt.map(str::trim).filter(|p| !p.is_empty()) {
        return Ok(prompt.to_owned());
    }
    let run: Vec<String> = trailing_user_run(messages)
        .into_iter()
        .map(|m| m.content.text().trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect();
    let joined = run.join("\n");
    if joined.is_empty() {
        Err(PromptError::Empty)
    } else {
        Ok(joined)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(prompt: Option<&str>, messages_json: &str, expected: Result<&str, PromptError>) {
        let messages: Vec<ChatMessage> = serde_json::from_str(messages_json).expect("valid messages");
        assert_eq!(
            format_prompt(prompt, &messages),
            expected.map(str::to_owned),
            "prompt={prompt:?} messages={messages_json}"
        );
    }

    #[test]
    fn explicit_prompt_wins() {
        check(Some("a cat"), r#"[{"role":"user","content":"a dog"}]"#, Ok("a cat"));
        check(Some("  a cat \n"), "[]", Ok("a cat"));
    }

    #[test]
    fn blank_explicit_prompt_falls_back_to_messages() {
        check(Some("   "), r#"[{"role":"user","content":"a dog"}]"#, Ok("a dog"));
    }

    #[test]
    fn trailing_user_run_is_joined() {
        check(
            None,
            r#"[{"role":"user","content":"old"},{"role":"assistant","content":"ok"},
                {"role":"user","content":"a fox"},{"role":"user","content":"in the snow"}]"#,
            Ok("a fox\nin the snow"),
        );
    }

    #[test]
    fn non_user_messages_after_the_run_are_skipped() {
        check(
            None,
            r#"[{"role":"system","content":"be nice"},{"role":"user","content":"a fox"},
                {"role":"assistant","content":"here it is"}]"#,
            Ok("a fox"),
        );
    }

    #[test]
    fn only_text_parts_count() {
        check(
            None,
            r#"[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}},
                {"type":"text","text":"make it blue"},{"type":"text","text":"  "},
                {"type":"text","text":"and bigger"}]}]"#,
            Ok("make it blue\nand bigger"),
        );
    }

    #[test]
    fn unknown_roles_are_not_user() {
        check(
            None,
            r#"[{"role":"user","content":"first"},{"role":"function","content":"x"},{"role":"user","content":"second"}]"#,
            Ok("second"),
        );
    }

    #[test]
    fn empty_inputs_are_an_error_that_says_what_to_do() {
        check(None, "[]", Err(PromptError::Empty));
        check(
            None,
            r#"[{"role":"assistant","content":"hi"}]"#,
            Err(PromptError::Empty),
        );
        check(None, r#"[{"role":"user","content":"   "}]"#, Err(PromptError::Empty));
        check(
            None,
            r#"[{"role":"user","content":[{"type":"image_url"}]}]"#,
            Err(PromptError::Empty),
        );
        assert!(PromptError::Empty.to_string().contains("pass a prompt"));
    }

    #[test]
    fn the_trailing_user_run_gives_its_images_in_order() {
        let messages: Vec<ChatMessage> = serde_json::from_str(
            r#"[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/old.png"}}]},
                {"role":"assistant","content":"done"},
                {"role":"user","content":[{"type":"text","text":"the two of them"},
                    {"type":"image_url","image_url":{"url":"https://x/a.png"}}]},
                {"role":"user","content":[{"type":"image_url","image_url":"data:image/png;base64,AAAA"},
                    {"type":"image_url","image_url":{"detail":"high"}}]}]"#,
        )
        .unwrap();
        assert_eq!(
            chat_images(&messages),
            ["https://x/a.png", "data:image/png;base64,AAAA"]
        );
        assert_eq!(format_prompt(None, &messages).unwrap(), "the two of them");
        assert!(chat_images(&[ChatMessage::user("a fox")]).is_empty());
        assert_eq!(
            ContentPart::image("https://x/b.png").image_url(),
            Some("https://x/b.png")
        );
    }

    #[test]
    fn messages_round_trip() {
        let m = ChatMessage::user("hello");
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"role":"user","content":"hello"}"#);
        let parts = ChatMessage {
            role: Role::User,
            content: MessageContent::Parts(vec![ContentPart::text("x")]),
        };
        let back: ChatMessage = serde_json::from_str(&serde_json::to_string(&parts).unwrap()).unwrap();
        assert_eq!(back, parts);
    }
}
