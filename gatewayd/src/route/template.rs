//! Path templates (`/pets/{id}`, `/Calls/{Sid}.json`): parsing, matching one path, and the
//! per-segment specificity that orders templates against each other.
//!
//! A path is split at every `/` after the leading one, so `/a/b/` has the segments `a`, `b` and
//! ``; a template matches a path with the same number of segments, each matched whole. A
//! `{name}` matches one or more bytes of one segment, never a `/`.

use std::cmp::Reverse;

use thiserror::Error;

/// A validated path template. Built only through [`PathTemplate::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    source: String,
    segments: Vec<Segment>,
}

/// One `/`-separated piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Segment {
    /// Matched byte for byte.
    Literal(Box<str>),
    /// Holds at least one `{name}`.
    Pattern(Pattern),
}

/// A segment with parameters: literal parts and parameters, no two parameters adjacent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pattern {
    parts: Vec<Part>,
    /// The segment with every name removed (`{}.json`): patterns of one shape match the same
    /// segments, so the route table stores them in one node.
    shape: Box<str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(Box<str>),
    Param,
}

/// Specificity of one template segment; smaller is more specific. A literal beats a pattern
/// with literal text (more literal bytes first), which beats a whole-segment `{name}`; the shape
/// breaks the remaining ties so that the order is total over distinct shapes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct SegmentRank(u8, Reverse<usize>, Box<str>);

/// Why a template was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TemplateError {
    /// The template does not start with `/`.
    #[error("'{0}' must start with '/'")]
    NoLeadingSlash(String),
    /// A `{` without its `}`, or a `{` inside a name.
    #[error("'{0}': '{{' without a closing '}}'")]
    Unclosed(String),
    /// A `}` without its `{`.
    #[error("'{0}': '}}' without an opening '{{'")]
    Unopened(String),
    /// `{}`.
    #[error("'{0}': empty '{{}}' (a parameter needs a name)")]
    EmptyName(String),
    /// The same name twice.
    #[error("'{0}': parameter '{1}' appears twice")]
    Duplicate(String, String),
    /// `{a}{b}`: nothing tells where one ends.
    #[error("'{0}': parameters '{1}' and '{2}' are adjacent (put a literal between them)")]
    Adjacent(String, String, String),
}

// === impl PathTemplate ===

impl PathTemplate {
    /// Parses `/pets/{id}`; names are any text but `{`, `}` and `/`, unique in the template.
    pub fn parse(src: &str) -> Result<Self, TemplateError> {
        let rest = src
            .strip_prefix('/')
            .ok_or_else(|| TemplateError::NoLeadingSlash(src.into()))?;
        let mut names: Vec<&str> = Vec::new();
        let mut segments = Vec::new();
        for seg in rest.split('/') {
            segments.push(parse_segment(src, seg, &mut names)?);
        }
        Ok(Self {
            source: src.into(),
            segments,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The parameter names in order of appearance.
    pub fn params(&self) -> impl Iterator<Item = &str> + '_ {
        let mut out = Vec::new();
        let mut rest = self.source.as_str();
        while let Some(open) = rest.find('{') {
            let after = &rest[open + 1..];
            let close = after.find('}').unwrap_or(after.len());
            out.push(&after[..close]);
            rest = after.get(close + 1..).unwrap_or("");
        }
        out.into_iter()
    }

    /// The template with parameter names removed (`/pets/{}`, `/Calls/{}.json`): two templates of
    /// one shape match the same paths.
    pub fn shape(&self) -> String {
        let segs: Vec<&str> = self
            .segments
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => &**l,
                Segment::Pattern(p) => p.shape(),
            })
            .collect();
        format!("/{}", segs.join("/"))
    }

    /// True when `path` (without query) has this template's shape.
    pub fn matches(&self, path: &str) -> bool {
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        let mut segs = rest.split('/');
        self.segments
            .iter()
            .all(|t| segs.next().is_some_and(|s| t.matches(s)))
            && segs.next().is_none()
    }

    /// The literal first segment, when the template starts with one.
    pub(super) fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Per-segment specificity, compared lexicographically.
    pub(super) fn rank(&self) -> Vec<SegmentRank> {
        self.segments.iter().map(Segment::rank).collect()
    }
}

fn parse_segment<'a>(
    src: &str,
    seg: &'a str,
    names: &mut Vec<&'a str>,
) -> Result<Segment, TemplateError> {
    if !seg.contains(['{', '}']) {
        return Ok(Segment::Literal(seg.into()));
    }
    let mut parts = Vec::new();
    let mut shape = String::new();
    let mut rest = seg;
    let mut last_param: Option<&str> = None;
    while !rest.is_empty() {
        match rest.find(['{', '}']) {
            Some(i) if rest.as_bytes()[i] == b'}' => {
                return Err(TemplateError::Unopened(src.into()));
            }
            Some(i) => {
                if i > 0 {
                    parts.push(Part::Literal(rest[..i].into()));
                    shape.push_str(&rest[..i]);
                    last_param = None;
                }
                let after = &rest[i + 1..];
                let close = match after.find(['{', '}']) {
                    Some(c) if after.as_bytes()[c] == b'}' => c,
                    _ => return Err(TemplateError::Unclosed(src.into())),
                };
                let name = &after[..close];
                if name.is_empty() {
                    return Err(TemplateError::EmptyName(src.into()));
                }
                if names.contains(&name) {
                    return Err(TemplateError::Duplicate(src.into(), name.into()));
                }
                if let Some(prev) = last_param {
                    return Err(TemplateError::Adjacent(
                        src.into(),
                        prev.into(),
                        name.into(),
                    ));
                }
                names.push(name);
                parts.push(Part::Param);
                shape.push_str("{}");
                last_param = Some(name);
                rest = &after[close + 1..];
            }
            None => {
                parts.push(Part::Literal(rest.into()));
                shape.push_str(rest);
                rest = "";
            }
        }
    }
    Ok(Segment::Pattern(Pattern {
        parts,
        shape: shape.into(),
    }))
}

// === impl Segment ===

impl Segment {
    fn matches(&self, seg: &str) -> bool {
        match self {
            Self::Literal(l) => **l == *seg,
            Self::Pattern(p) => p.matches(seg),
        }
    }

    fn rank(&self) -> SegmentRank {
        match self {
            Self::Literal(l) => SegmentRank(0, Reverse(l.len()), l.clone()),
            Self::Pattern(p) => p.rank(),
        }
    }
}

// === impl Pattern ===

impl Pattern {
    /// True when the whole of `seg` matches, every parameter taking at least one byte.
    pub(super) fn matches(&self, seg: &str) -> bool {
        match_parts(&self.parts, seg)
    }

    /// The shape (`{}.json`): the key under which the route table stores it.
    pub(super) fn shape(&self) -> &str {
        &self.shape
    }

    pub(super) fn rank(&self) -> SegmentRank {
        let literal: usize = self
            .parts
            .iter()
            .map(|p| match p {
                Part::Literal(l) => l.len(),
                Part::Param => 0,
            })
            .sum();
        let class = if literal == 0 { 2 } else { 1 };
        SegmentRank(class, Reverse(literal), self.shape.clone())
    }
}

fn match_parts(parts: &[Part], seg: &str) -> bool {
    match parts.split_first() {
        None => seg.is_empty(),
        Some((Part::Literal(l), rest)) => seg
            .strip_prefix(&**l)
            .is_some_and(|tail| match_parts(rest, tail)),
        Some((Part::Param, [])) => !seg.is_empty(),
        // The next part is a literal (parameters are never adjacent): try every place it occurs.
        Some((Part::Param, rest)) => seg
            .char_indices()
            .skip(1)
            .any(|(i, _)| match_parts(rest, &seg[i..])),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn whole_and_partial_segments() {
        let t = PathTemplate::parse("/Calls/{Sid}.json").unwrap();
        assert!(t.matches("/Calls/CA12.json"));
        assert!(!t.matches("/Calls/.json"));
        assert!(!t.matches("/Calls/CA12.xml"));
        assert!(!t.matches("/Calls/CA12.json/x"));
        let t = PathTemplate::parse("/pets/{id}").unwrap();
        assert!(t.matches("/pets/1"));
        assert!(!t.matches("/pets/"));
        assert!(!t.matches("/pets"));
        assert!(!t.matches("/pets/1/"));
        let t = PathTemplate::parse("/v/{a}.{b}-x").unwrap();
        assert!(t.matches("/v/1.2.3-x"));
        assert!(!t.matches("/v/1-x"));
        assert_eq!(t.params().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(t.shape(), "/v/{}.{}-x");
    }

    #[test]
    fn refused_templates() {
        let e = |s: &str| PathTemplate::parse(s).unwrap_err();
        assert!(matches!(e("pets/{id}"), TemplateError::NoLeadingSlash(_)));
        assert!(matches!(e("/pets/{id"), TemplateError::Unclosed(_)));
        assert!(matches!(e("/pets/{i{d}}"), TemplateError::Unclosed(_)));
        assert!(matches!(e("/pets/id}"), TemplateError::Unopened(_)));
        assert!(matches!(e("/pets/{}"), TemplateError::EmptyName(_)));
        assert!(matches!(e("/{id}/x/{id}"), TemplateError::Duplicate(..)));
        assert!(matches!(e("/x/{a}{b}"), TemplateError::Adjacent(..)));
    }

    #[test]
    fn literal_beats_partial_beats_whole() {
        let r = |s: &str| PathTemplate::parse(s).unwrap().rank();
        assert!(r("/a/@me") < r("/a/{id}.json"));
        assert!(r("/a/{id}.json") < r("/a/{id}.j"));
        assert!(r("/a/{id}.j") < r("/a/{id}"));
        assert!(r("/a/{x}/b") < r("/{x}/a/b"));
    }
}
