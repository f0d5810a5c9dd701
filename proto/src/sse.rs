//! Server-Sent Events decoding (`text/event-stream`, HTML Living Standard
//! section 9.2), for whoever follows the broker's revocation feed: the
//! SDK's follower and the black-box tests read events with this one
//! decoder.
//!
//! Why not a crate: `eventsource-stream`, the usual choice, holds its
//! buffer without limit and parses an unfinished line again from its start
//! on every chunk, so a hostile or broken broker that never ends a line
//! makes a follower buffer without bound, in quadratic time. This decoder holds at most a
//! limit of bytes between chunks, refuses an event that grows past it, and
//! costs time linear in the bytes heard.
//!
//! What it follows of the standard: lines end at LF (a CR before it is
//! dropped); a blank line ends an event; `:` starts a comment (the broker's
//! heartbeat); `field: value` loses one space after the colon; `data`
//! lines are joined with LF; `event` names the event; `id` (without NUL)
//! sets the last event id, which later events keep; other fields (`retry`)
//! are ignored; an event without `data` is not dispatched. Where it does
//! not: a lone CR is not a line end, and a byte-order mark is not skipped
//! (axum writes neither), and bytes are not decoded as UTF-8 before lines
//! are split, so a character cut across chunks is never mangled.

/// One event: what the lines before a blank line said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    /// The last event id of the stream (`id:`), this event's or an earlier
    /// one's; `None` before any.
    pub id: Option<String>,
    /// The event name (`event:`); `None` is the standard's `message`.
    pub event: Option<String>,
    /// The `data:` values, joined with LF, as bytes (each line's bytes as
    /// sent, whatever their encoding).
    pub data: Vec<u8>,
}

/// An event grew past the decoder's limit; the stream is to be dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("server-sent event larger than {limit} bytes")]
pub struct TooLarge {
    /// The limit it passed, in bytes.
    pub limit: usize,
}

/// A decoder of one event stream, fed chunks as they arrive. It holds at
/// most `limit` bytes (the line being read and the fields of the event
/// being built) between chunks, and an event whose fields pass `limit`
/// is refused even when it arrives in one chunk.
#[derive(Debug)]
pub struct Decoder {
    /// Bytes after the last LF: the start of the next line.
    buf: Vec<u8>,
    fields: Fields,
    limit: usize,
}

/// The event being read, and the id that outlives it.
#[derive(Debug, Default)]
struct Fields {
    /// The `data` values, each followed by LF.
    data: Vec<u8>,
    event: Option<Vec<u8>>,
    last_id: Option<Vec<u8>>,
}

impl Decoder {
    /// A decoder holding at most `limit` bytes between chunks.
    pub fn new(limit: usize) -> Self {
        Self {
            buf: Vec::new(),
            fields: Fields::default(),
            limit,
        }
    }

    /// Feeds one chunk, handing each event it completes to `on_event`, in
    /// order. An event past the limit is [`TooLarge`]; an error of
    /// `on_event` stops decoding. Either way the events before it were
    /// handed over, and the stream is to be dropped.
    pub fn push<E: From<TooLarge>>(
        &mut self,
        chunk: &[u8],
        mut on_event: impl FnMut(Event) -> Result<(), E>,
    ) -> Result<(), E> {
        let Self { buf, fields, limit } = self;
        // Lines are consumed by offset and drained once per chunk, and the
        // bytes held from earlier chunks (which hold no LF) are not searched
        // again, so decoding costs time linear in the bytes heard.
        let mut search_from = buf.len();
        buf.extend_from_slice(chunk);
        let mut consumed = 0;
        let mut outcome = Ok(());
        while let Some(tail) = buf.get(search_from..)
            && let Some(newline) = tail.iter().position(|b| *b == b'\n')
        {
            let end = search_from + newline;
            let line = buf.get(consumed..end).unwrap_or_default();
            consumed = end + 1;
            search_from = consumed;
            outcome = fields.line(line, *limit, &mut on_event);
            if outcome.is_err() {
                break;
            }
        }
        buf.drain(..consumed);
        outcome?;
        if self.held() > self.limit {
            return Err(TooLarge { limit: self.limit }.into());
        }
        Ok(())
    }

    /// Bytes held between chunks: the line being read and the fields of
    /// the event being built.
    pub fn held(&self) -> usize {
        self.buf.len() + self.fields.held()
    }
}

impl Fields {
    fn held(&self) -> usize {
        self.data.len()
            + self.event.as_ref().map_or(0, Vec::len)
            + self.last_id.as_ref().map_or(0, Vec::len)
    }

    /// Takes one line (without its LF), dispatching the event a blank line
    /// ends.
    fn line<E: From<TooLarge>>(
        &mut self,
        line: &[u8],
        limit: usize,
        on_event: &mut impl FnMut(Event) -> Result<(), E>,
    ) -> Result<(), E> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return self.dispatch(on_event);
        }
        if line.starts_with(b":") {
            return Ok(());
        }
        let (name, value) = match line.iter().position(|b| *b == b':') {
            Some(colon) => {
                let (name, rest) = line.split_at(colon);
                let value = rest.get(1..).unwrap_or_default();
                (name, value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" => {
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
            }
            b"event" => self.event = Some(value.to_vec()),
            b"id" if !value.contains(&0) => self.last_id = Some(value.to_vec()),
            _ => {}
        }
        if self.held() > limit {
            return Err(TooLarge { limit }.into());
        }
        Ok(())
    }

    fn dispatch<E>(&mut self, on_event: &mut impl FnMut(Event) -> Result<(), E>) -> Result<(), E> {
        let event = self.event.take();
        if self.data.is_empty() {
            return Ok(());
        }
        let mut data = std::mem::take(&mut self.data);
        // The LF after the last line.
        data.pop();
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        on_event(Event {
            id: self.last_id.as_deref().map(text),
            event: event.as_deref().map(text),
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` until the first error: the events, and the error.
    fn decode(chunks: &[&[u8]], limit: usize) -> (Vec<Event>, Option<TooLarge>) {
        let mut decoder = Decoder::new(limit);
        let mut events = Vec::new();
        for chunk in chunks {
            if let Err(e) = decoder.push(chunk, |event| {
                events.push(event);
                Ok::<_, TooLarge>(())
            }) {
                return (events, Some(e));
            }
            assert!(decoder.held() <= limit);
        }
        (events, None)
    }

    fn event(id: Option<&str>, name: Option<&str>, data: &str) -> Event {
        Event {
            id: id.map(str::to_owned),
            event: name.map(str::to_owned),
            data: data.as_bytes().to_vec(),
        }
    }

    #[test]
    fn the_broker_s_events_decode_with_their_id_name_and_data() {
        let stream = b": heartbeat\n\nid: 7\nevent: revocation\ndata: {\"seq\":7}\n\n\
            id: 8\r\nevent: revocation\r\ndata: {\"seq\":8}\r\n\r\n";
        assert_eq!(
            decode(&[stream], 1024),
            (
                vec![
                    event(Some("7"), Some("revocation"), "{\"seq\":7}"),
                    event(Some("8"), Some("revocation"), "{\"seq\":8}"),
                ],
                None
            )
        );
    }

    #[test]
    fn fields_follow_the_standard() {
        // Data lines joined with LF; one space stripped; a field without a
        // colon has an empty value; the id outlives its event; unknown
        // fields and events without data are ignored; the name does not.
        let stream = b"data:a\ndata:  b\ndata\nid: 1\nretry: 10\nx: y\n\n\
            event: e\n\ndata: c\n\nid: 2\0\ndata: d\n\n";
        assert_eq!(
            decode(&[stream], 1024).0,
            vec![
                event(Some("1"), None, "a\n b\n"),
                event(Some("1"), None, "c"),
                event(Some("1"), None, "d"),
            ]
        );
    }

    #[test]
    fn a_character_cut_between_chunks_is_kept_whole() {
        let stream = "data: é\n\n".as_bytes();
        let (first, rest) = stream.split_at(7);
        assert_eq!(decode(&[first, rest], 1024).0, vec![event(None, None, "é")]);
    }

    #[test]
    fn a_line_that_never_ends_is_refused_at_the_limit() {
        let endless = [b'a'; 100];
        let (events, error) = decode(&[b"data: {}\n\n", &endless, &endless], 150);
        assert_eq!(events, vec![event(None, None, "{}")]);
        assert_eq!(error, Some(TooLarge { limit: 150 }));
    }

    #[test]
    fn an_event_past_the_limit_is_refused_even_in_one_chunk() {
        // Many short data lines, each under the limit, in one chunk.
        let stream = "data: 0123456789\n".repeat(20) + "\n";
        assert_eq!(
            decode(&[stream.as_bytes()], 100),
            (vec![], Some(TooLarge { limit: 100 }))
        );
        // An id or a name counts too.
        for field in ["id", "event"] {
            let line = format!("{field}: {}\n", "a".repeat(101));
            assert_eq!(
                decode(&[line.as_bytes()], 100).1,
                Some(TooLarge { limit: 100 })
            );
        }
    }

    #[test]
    fn an_error_of_the_reader_stops_decoding_after_the_events_before_it() {
        let mut decoder = Decoder::new(1024);
        let mut seen = Vec::new();
        let outcome = decoder.push(b"data: 1\n\ndata: 2\n\ndata: 3\n\n", |event| {
            seen.push(event.data.clone());
            if event.data == b"2" {
                Err(TooLarge { limit: 0 })
            } else {
                Ok(())
            }
        });
        assert_eq!(outcome, Err(TooLarge { limit: 0 }));
        assert_eq!(seen, vec![b"1".to_vec(), b"2".to_vec()]);
    }
}
