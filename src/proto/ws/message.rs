//! A whole data message as the connection hands it on: text already checked as UTF-8 (once,
//! by the connection, as RFC 6455 8.1 requires), so its readers take it as a `str` and need
//! not check it again.

use super::decoder::DataKind;

/// A whole WebSocket data message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message: valid UTF-8.
    Text(&'a str),
    Binary(&'a [u8]),
}

impl<'a> Message<'a> {
    pub const fn kind(&self) -> DataKind {
        match self {
            Message::Text(_) => DataKind::Text,
            Message::Binary(_) => DataKind::Binary,
        }
    }

    /// The payload's bytes, whatever the kind.
    pub const fn as_bytes(&self) -> &'a [u8] {
        match self {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b,
        }
    }

    pub const fn len(&self) -> usize {
        self.as_bytes().len()
    }

    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The message as text: a text message's `str`, or a binary one's bytes if they are UTF-8
    /// (checked here; some dialects read JSON from either kind).
    pub fn text(&self) -> Option<&'a str> {
        match self {
            Message::Text(t) => Some(t),
            Message::Binary(b) => super::utf8::whole_str(b),
        }
    }
}
