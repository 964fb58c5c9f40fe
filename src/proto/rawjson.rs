//! JSON read in place: a checking reader that hands out each value's exact text.
//!
//! A relaying dialect forwards most of what a client sends as it came: the WebTorrent tracker
//! never looks inside an offer's SDP, it only has to know that the request is JSON and where
//! each member's value begins and ends. [`Reader`] checks a document as strictly as serde_json
//! (RFC 8259: no trailing commas, no control characters in strings, no leading zeros) and
//! gives out values as `&str` slices of it, with no copy and no allocation.
//!
//! It is faster than serde_json's raw values where relaying spends its time, in long strings
//! with escapes every few dozen bytes (an SDP has an escaped CR LF at the end of every line).
//! A string is read 64 bytes at a time: one set of vector compares marks the quotes,
//! backslashes and control characters of the block, and the escapes in it are checked from
//! those marks without leaving the block. A block with a `\\\\` escape in it, and the last
//! 63 bytes of a document, are read byte by byte.
//!
//! Nesting is not limited: values nobody reads are skipped without recursion, and the
//! reader's callers recurse only as deep as the members they look into.

use std::borrow::Cow;

/// A cursor over one JSON document.
///
/// [`object`](Reader::object) and [`array`](Reader::array) hand each member or element to a
/// callback positioned at its value; a callback that does not read the value (with
/// [`value`](Reader::value), `object` or `array`) has it skipped for it. A callback must read
/// at most one value. Every method returns `None` as soon as the text is not JSON.
pub struct Reader<'a> {
    text: &'a str,
    at: usize,
    /// A callback was handed a value it has not read yet.
    pending: bool,
}

impl<'a> Reader<'a> {
    /// Reads `text` as one JSON document: `read` reads its value, after which only whitespace
    /// may follow.
    pub fn document<T>(
        text: &'a str,
        read: impl FnOnce(&mut Reader<'a>) -> Option<T>,
    ) -> Option<T> {
        let mut r = Reader {
            text,
            at: 0,
            pending: true,
        };
        let out = read(&mut r)?;
        if r.pending {
            r.value()?;
        }
        r.whitespace();
        (r.at == text.len()).then_some(out)
    }

    /// The next value's text (without the whitespace around it), checked.
    pub fn value(&mut self) -> Option<&'a str> {
        self.pending = false;
        self.whitespace();
        let start = self.at;
        self.skip()?;
        Some(&self.text[start..self.at])
    }

    /// If the next value is an object, calls `member` with each member's name (unescaped: a
    /// slice of the text unless it had escapes), positioned at its value, and answers `true`;
    /// any other value is checked and skipped, and the answer is `false`. A name given twice
    /// is handed over twice.
    pub fn object(
        &mut self,
        mut member: impl FnMut(&mut Self, Cow<'a, str>) -> Option<()>,
    ) -> Option<bool> {
        self.pending = false;
        self.whitespace();
        if self.peek() != Some(b'{') {
            self.skip()?;
            return Some(false);
        }
        self.at += 1;
        self.whitespace();
        if self.eat(b'}') {
            return Some(true);
        }
        loop {
            let name = self.name()?;
            self.pending = true;
            member(self, name)?;
            if self.pending {
                self.value()?;
            }
            self.whitespace();
            match self.next()? {
                b',' => self.whitespace(),
                b'}' => return Some(true),
                _ => return None,
            }
        }
    }

    /// If the next value is an array, calls `element` positioned at each element and answers
    /// `true`; any other value is checked and skipped, and the answer is `false`.
    pub fn array(&mut self, mut element: impl FnMut(&mut Self) -> Option<()>) -> Option<bool> {
        self.pending = false;
        self.whitespace();
        if self.peek() != Some(b'[') {
            self.skip()?;
            return Some(false);
        }
        self.at += 1;
        self.whitespace();
        if self.eat(b']') {
            return Some(true);
        }
        loop {
            self.pending = true;
            element(self)?;
            if self.pending {
                self.value()?;
            }
            self.whitespace();
            match self.next()? {
                b',' => {}
                b']' => return Some(true),
                _ => return None,
            }
        }
    }

    /// The first character of the next value, which is not read.
    pub fn peek_value(&mut self) -> Option<u8> {
        self.whitespace();
        self.peek()
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        self.at += usize::from(hit);
        hit
    }

    fn whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// A member's name, unescaped, and the `:` after it, the reader at the start of the name.
    /// A name with an escape that is no character (a lone surrogate, as serde_json decodes
    /// strings) fails the document.
    fn name(&mut self) -> Option<Cow<'a, str>> {
        let raw = self.name_text()?;
        string(raw)
    }

    /// A member's name as it is written (quotes included) and the `:` after it, checked but not
    /// decoded: names inside skipped values are never looked at.
    fn name_text(&mut self) -> Option<&'a str> {
        let start = self.at;
        if !self.eat(b'"') {
            return None;
        }
        self.at = string_end(self.bytes(), self.at)?;
        let raw = &self.text[start..self.at];
        self.whitespace();
        self.eat(b':').then_some(raw)
    }

    /// Checks and passes the value at the cursor (no whitespace before it). Containers are
    /// walked without recursion: `open` keeps which kind each open one is.
    fn skip(&mut self) -> Option<()> {
        let mut open = Kinds::default();
        loop {
            // A value starts here.
            match self.next()? {
                b'"' => self.at = string_end(self.bytes(), self.at)?,
                b'{' => {
                    self.whitespace();
                    if !self.eat(b'}') {
                        open.push(Kind::Object);
                        self.name_text()?;
                        self.whitespace();
                        continue;
                    }
                }
                b'[' => {
                    self.whitespace();
                    if !self.eat(b']') {
                        open.push(Kind::Array);
                        continue;
                    }
                }
                b't' => self.literal(b"rue")?,
                b'f' => self.literal(b"alse")?,
                b'n' => self.literal(b"ull")?,
                b'-' => {
                    let first = self.next()?;
                    self.number(first)?;
                }
                first @ b'0'..=b'9' => self.number(first)?,
                _ => return None,
            }
            // A value ended: close what it ends, up to the next value if any.
            loop {
                let Some(kind) = open.top() else {
                    return Some(());
                };
                self.whitespace();
                match (self.next()?, kind) {
                    (b',', Kind::Object) => {
                        self.whitespace();
                        self.name_text()?;
                    }
                    (b',', Kind::Array) => {}
                    (b'}', Kind::Object) | (b']', Kind::Array) => {
                        open.pop();
                        continue;
                    }
                    _ => return None,
                }
                self.whitespace();
                break;
            }
        }
    }

    /// The rest of `true`, `false` or `null`, its first letter read.
    fn literal(&mut self, rest: &[u8]) -> Option<()> {
        let end = self.at + rest.len();
        if self.bytes().get(self.at..end)? != rest {
            return None;
        }
        self.at = end;
        Some(())
    }

    /// The rest of a number, from its first digit (read, as is the `-` before it).
    fn number(&mut self, first: u8) -> Option<()> {
        match first {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.eat(b'.') {
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            self.some_digits()?;
        }
        Some(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.at;
        self.digits();
        (self.at > start).then_some(())
    }
}

/// A JSON string value's text, unescaped (borrowed unless it has escapes); `None` for any
/// other value. `raw` is a value [`Reader`] handed out.
pub fn string(raw: &str) -> Option<Cow<'_, str>> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Object,
    Array,
}

/// A stack of container kinds, one bit each: the first 64 levels in a word, deeper ones on the
/// heap (only a document nested that deep allocates).
#[derive(Default)]
struct Kinds {
    low: u64,
    deep: Vec<bool>,
    len: usize,
}

impl Kinds {
    fn push(&mut self, k: Kind) {
        let object = k == Kind::Object;
        if self.len < 64 {
            self.low = (self.low & !(1 << self.len)) | (u64::from(object) << self.len);
        } else {
            self.deep.push(object);
        }
        self.len += 1;
    }

    fn pop(&mut self) {
        self.len -= 1;
        if self.len >= 64 {
            self.deep.pop();
        }
    }

    fn top(&self) -> Option<Kind> {
        let i = self.len.checked_sub(1)?;
        let object = if i < 64 {
            self.low >> i & 1 == 1
        } else {
            self.deep[i - 64]
        };
        Some(if object { Kind::Object } else { Kind::Array })
    }
}

/// Where a JSON string ends: the index just past its closing quote, for a string whose text
/// starts at `i` (just past its opening quote); `None` if it is not a valid JSON string.
fn string_end(s: &[u8], mut i: usize) -> Option<usize> {
    // Most strings a request has are short and plain (member names, short values): their end
    // is in the first 16 bytes, with nothing to check before it.
    if let Some(lane) = s.get(i..i + 16) {
        let v = wide::u8x16::from(<[u8; 16]>::try_from(lane).ok()?);
        let quotes = v.cmp_eq(wide::u8x16::splat(b'"')).move_mask();
        let first = quotes & quotes.wrapping_neg();
        let special =
            v.cmp_eq(wide::u8x16::splat(b'\\')) | v.min(wide::u8x16::splat(0x1f)).cmp_eq(v);
        if first != 0 && special.move_mask() & (first - 1) == 0 {
            return Some(i + first.trailing_zeros() as usize + 1);
        }
    }
    while let Some(block) = s.get(i..i + BLOCK) {
        let block: &[u8; BLOCK] = block.try_into().ok()?;
        match Marks::of(block).read(s, i) {
            Block::Ends(end) => return Some(end),
            Block::Continues(at) => i = at,
            Block::ByteByByte => match scalar(s, i, i + BLOCK)? {
                Scalar::Ends(end) => return Some(end),
                Scalar::Reached(at) => i = at,
            },
        }
    }
    match scalar(s, i, s.len())? {
        Scalar::Ends(end) => Some(end),
        Scalar::Reached(_) => None,
    }
}

const BLOCK: usize = 64;

/// One block's quotes, backslashes, control characters and `r` and `n`, a bit per byte.
struct Marks {
    quotes: u64,
    backslashes: u64,
    controls: u64,
    /// `r` or `n`: with a quote, the characters after nearly every backslash in an SDP.
    line_ends: u64,
}

enum Block {
    /// The string ends just before this index.
    Ends(usize),
    /// No end in the block: the string goes on from this index (the block's end, or past an
    /// escape that runs over it).
    Continues(usize),
    /// A `\\` escape, an invalid escape or a control character before the end: the block is
    /// read again byte by byte.
    ByteByByte,
}

impl Marks {
    fn of(block: &[u8; BLOCK]) -> Marks {
        use wide::u8x16;
        let (quote, backslash, control, r, n) = (
            u8x16::splat(b'"'),
            u8x16::splat(b'\\'),
            u8x16::splat(0x1f),
            u8x16::splat(b'r'),
            u8x16::splat(b'n'),
        );
        let mut m = Marks {
            quotes: 0,
            backslashes: 0,
            controls: 0,
            line_ends: 0,
        };
        for (k, lane) in block.chunks_exact(16).enumerate() {
            let v = u8x16::from(<[u8; 16]>::try_from(lane).unwrap_or_default());
            let bits = |x: u8x16| u64::from(x.move_mask() as u16) << (16 * k);
            m.quotes |= bits(v.cmp_eq(quote));
            m.backslashes |= bits(v.cmp_eq(backslash));
            m.controls |= bits(v.min(control).cmp_eq(v));
            m.line_ends |= bits(v.cmp_eq(r) | v.cmp_eq(n));
        }
        m
    }

    /// Reads the block of `s` at `i` from its marks, on the assumption that no backslash in it
    /// is escaped (no `\\`): then every backslash starts an escape, and the first quote no
    /// backslash precedes ends the string. Checked before it is relied on: if two backslashes
    /// touch before that quote, the block goes byte by byte. (The four hex digits of a `\u`
    /// escape are none of the marked characters.)
    fn read(&self, s: &[u8], i: usize) -> Block {
        let ends = self.quotes & !(self.backslashes << 1);
        // The bytes before the end (all of them if there is none).
        let before = ends.wrapping_sub(1) & !ends;
        let escapes = self.backslashes & before;
        if self.controls & before != 0 || escapes & (escapes << 1) != 0 {
            return Block::ByteByByte;
        }
        let mut next = i + BLOCK;
        // Every escape's character (but a last one's, past the block) checked at once when
        // they are all `\"`, `\r` or `\n`; one by one otherwise.
        let mut rest = if (escapes << 1) & !(self.quotes | self.line_ends) == 0 {
            escapes & 1 << 63
        } else {
            escapes
        };
        while rest != 0 {
            let at = i + rest.trailing_zeros() as usize;
            match escape_len(s, at) {
                Some(len) => next = next.max(at + len),
                None => return Block::ByteByByte,
            }
            rest &= rest - 1;
        }
        if ends != 0 {
            Block::Ends(i + ends.trailing_zeros() as usize + 1)
        } else {
            Block::Continues(next)
        }
    }
}

/// The length of the escape at `at` (a backslash), if it is one JSON allows.
#[inline(always)]
fn escape_len(s: &[u8], at: usize) -> Option<usize> {
    // A table, not a `match`: the latter becomes a jump between `\r` and `\n`, mispredicted
    // at every line of an SDP.
    let c = *s.get(at + 1)?;
    if TWO_CHARACTER_ESCAPE[usize::from(c)] {
        return Some(2);
    }
    let hex = s.get(at + 2..at + 6)?;
    (c == b'u' && hex.iter().all(u8::is_ascii_hexdigit)).then_some(6)
}

/// The characters after a backslash that make an escape of two characters.
static TWO_CHARACTER_ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 8 {
        t[b"\"\\/bfnrt"[i] as usize] = true;
        i += 1;
    }
    t
};

enum Scalar {
    Ends(usize),
    /// Read up to here, at or past the limit, inside the string.
    Reached(usize),
}

/// Reads string text byte by byte from `i` until its end or until at least `limit`.
fn scalar(s: &[u8], mut i: usize, limit: usize) -> Option<Scalar> {
    while i < limit {
        match *s.get(i)? {
            b'"' => return Some(Scalar::Ends(i + 1)),
            b'\\' => i += escape_len(s, i)?,
            0..=0x1f => return None,
            _ => i += 1,
        }
    }
    Some(Scalar::Reached(i))
}

#[cfg(test)]
mod tests;
