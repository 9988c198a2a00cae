//! A minimal server-sent events parser (the subset `/v1/events` uses: `id`, `event`, `data`,
//! comment lines), fed with arbitrary byte chunks.

/// One dispatched SSE frame.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseFrame {
    /// `id:` field, if any.
    pub id: Option<String>,
    /// `event:` field, if any.
    pub event: Option<String>,
    /// `data:` lines joined with `\n`.
    pub data: String,
}

/// Incremental parser: bytes in, complete frames out. Lines may be split across chunks
/// anywhere, even inside a UTF-8 sequence.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    frame: SseFrame,
    has_data: bool,
}

// === impl SseParser ===

impl SseParser {
    /// Feeds a chunk; returns the frames it completed (possibly none).
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseFrame> {
        let mut out = Vec::new();
        for &b in chunk {
            if b == b'\n' {
                let mut line = std::mem::take(&mut self.line);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.line_done(&String::from_utf8_lossy(&line), &mut out);
            } else {
                self.line.push(b);
            }
        }
        out
    }

    fn line_done(&mut self, line: &str, out: &mut Vec<SseFrame>) {
        if line.is_empty() {
            if self.has_data {
                out.push(std::mem::take(&mut self.frame));
            }
            self.frame = SseFrame::default();
            self.has_data = false;
            return;
        }
        if line.starts_with(':') {
            return; // comment / keep-alive
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "id" => self.frame.id = Some(value.to_string()),
            "event" => self.frame.event = Some(value.to_string()),
            "data" => {
                if self.has_data {
                    self.frame.data.push('\n');
                }
                self.frame.data.push_str(value);
                self.has_data = true;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_anywhere_are_reassembled() {
        let text = ": ping\n\nid: 7\nevent: weights_changed\ndata: {\"a\":\"é\"}\n\n: ping\r\n\r\nid: 8\r\ndata: x\r\ndata: y\r\n\r\n";
        let bytes = text.as_bytes();
        for split in 0..bytes.len() {
            let mut p = SseParser::default();
            let mut frames = p.push(&bytes[..split]);
            frames.extend(p.push(&bytes[split..]));
            assert_eq!(
                frames,
                vec![
                    SseFrame {
                        id: Some("7".into()),
                        event: Some("weights_changed".into()),
                        data: "{\"a\":\"é\"}".into(),
                    },
                    SseFrame {
                        id: Some("8".into()),
                        event: None,
                        data: "x\ny".into(),
                    },
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn incomplete_frames_wait() {
        let mut p = SseParser::default();
        assert!(p.push(b"data: 1\n").is_empty());
        assert_eq!(p.push(b"\n").len(), 1);
    }
}
