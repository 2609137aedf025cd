//! The parser: `.model` text → [`ModelFile`] (grammar: `docs/language.md`).
//!
//! Built with nom over [`LocatedSpan`] so every node gets its byte span. Parsers return
//! `Err::Error` while alternatives remain and `Err::Failure` (via `cut`) once a construct has
//! committed, so errors point at the real problem. Errors are [`Diagnostic`]s with a precise
//! span, label and, where it helps, a note or a hint.

mod error;
mod expr;
mod items;
mod lex;

pub use lex::is_keyword;

#[cfg(test)]
mod tests;

use super::ast::{Ident, Item, ModelFile, Span};
use crate::diag::Diagnostic;
use error::{PResult, abort, found, in_braces, unclosed_at_end};
use lex::{at_eof, eat, ident, kw, peek_word, skip, sym};
use nom::Parser;
use nom::combinator::cut;
use nom_locate::LocatedSpan;

/// The parser's input: the rest of the source with its byte offset.
type In<'a> = LocatedSpan<&'a str>;

/// Byte offset of the start of `i` in the source.
fn pos(i: In) -> usize {
    i.location_offset()
}

/// Parses a whole `.model` file.
///
/// On failure the [`Diagnostic`] points at the first error (byte offsets into `src`).
pub fn parse_model(src: &str) -> Result<ModelFile, Diagnostic> {
    match model_file(In::new(src)) {
        Ok((_, model)) => Ok(model),
        Err(nom::Err::Error(e) | nom::Err::Failure(e)) => Err(*e.diag),
        Err(nom::Err::Incomplete(_)) => {
            let end = Span::new(src.len(), src.len());
            Err(Diagnostic::new(
                "unexpected end of file",
                end,
                "the file ends here",
            ))
        }
    }
}

/// `file = "model" IDENT "{" item* "}"`, then nothing but whitespace.
fn model_file(i: In) -> PResult<ModelFile> {
    let (rest, (start, name, open)) = header(i)?;
    let (rest, (items, close)) = model_body(rest, open)?;
    let (rest, ()) = end_of_file(rest, close)?;
    Ok((
        rest,
        ModelFile {
            name,
            items,
            span: start.to(close),
        },
    ))
}

/// `"model" IDENT "{"`: the span of `model`, the name and the span of `{`.
fn header(i: In) -> PResult<(Span, Ident, Span)> {
    let (rest, start) = kw("model")(i).or_else(|_| header_error(i, "`model`"))?;
    let (rest, name) = if peek_word(rest).is_some() {
        cut(ident).parse(rest)?
    } else {
        header_error(rest, "the model's name")?
    };
    let (rest, open) = sym("{")(rest).or_else(|_| header_error(rest, "`{`"))?;
    Ok((rest, (start, name, open)))
}

/// The file does not start with `model NAME {`.
fn header_error<'a, T>(i: In<'a>, what: &str) -> PResult<'a, T> {
    let f = found(i);
    let label = format!("expected {what}, found {}", f.desc);
    abort(Diagnostic::new("expected `model NAME {`", f.span, label))
}

/// `item* "}"` after the model's `{` at `open`: the items and the span of the `}`.
fn model_body(mut i: In, open: Span) -> PResult<(Vec<Item>, Span)> {
    let mut items = Vec::new();
    loop {
        if at_eof(i) {
            return abort(unclosed_at_end(open, i));
        }
        if let Some((rest, close)) = eat(i, "}") {
            return Ok((rest, (items, close)));
        }
        let (rest, item) = items::item(i).map_err(|e| in_braces(e, open))?;
        items.push(item);
        i = rest;
    }
}

/// Nothing but whitespace and comments after the model's `}` at `close`.
fn end_of_file(i: In, close: Span) -> PResult<()> {
    if at_eof(i) {
        return Ok((skip(i), ()));
    }
    let f = found(i);
    let d = Diagnostic::new(
        "unexpected text after the model",
        f.span,
        "expected end of file",
    );
    abort(d.with_note(close, "the model ends here"))
}

/// `item ("," item)*`; after a `,` another item must follow.
fn comma_list<'a, T>(
    i: In<'a>,
    mut item: impl FnMut(In<'a>) -> PResult<'a, T>,
) -> PResult<'a, Vec<T>> {
    let (mut i, first) = item(i)?;
    let mut list = vec![first];
    while let Some((rest, _)) = eat(i, ",") {
        let (rest, next) = cut(&mut item).parse(rest)?;
        list.push(next);
        i = rest;
    }
    Ok((i, list))
}
