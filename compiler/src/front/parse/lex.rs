//! Tokens: whitespace and comments, punctuation, keywords, names, numbers and strings.
//!
//! Every token parser skips the whitespace before it, never after, so the input a parser
//! receives starts right after the previous token (where a missing `;` belongs).

use super::error::{PErr, PResult, abort, expected, fail, found, keyword_as_name, short};
use super::{In, pos};
use crate::diag::Diagnostic;
use crate::front::ast::{Expr, ExprKind, Ident, Span};
use nom::bytes::complete::{take, take_till, take_while};
use nom::character::complete::{char, digit1, one_of, satisfy};
use nom::combinator::{cut, opt, recognize};
use nom::{Input, Parser};

/// The reserved words: never names.
const KEYWORDS: [&str; 14] = [
    "model",
    "format",
    "dim",
    "input",
    "weight",
    "rename",
    "block",
    "let",
    "return",
    "repeat",
    "output",
    "from",
    "to",
    "transposed",
];

/// Whether `w` is a reserved word.
pub fn is_keyword(w: &str) -> bool {
    KEYWORDS.contains(&w)
}

/// `[A-Za-z_]`
pub(super) fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

/// `[A-Za-z0-9_]`
pub(super) fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The byte range of a piece of input.
pub(super) fn span_of(t: In) -> Span {
    Span::new(pos(t), pos(t) + t.fragment().len())
}

/// Byte length of the whitespace (including a byte-order mark) and `//` comments at the
/// start of `s`.
fn trivia_len(s: &str) -> usize {
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
        match rest.strip_prefix("//") {
            Some(comment) => rest = comment.find('\n').map_or("", |n| &comment[n..]),
            None => return s.len() - rest.len(),
        }
    }
}

/// Skips whitespace and comments.
pub(super) fn skip(i: In) -> In {
    i.take_from(trivia_len(i.fragment()))
}

/// Only whitespace and comments remain.
pub(super) fn at_eof(i: In) -> bool {
    skip(i).fragment().is_empty()
}

/// The next token starts with `s`.
pub(super) fn peek(i: In, s: &str) -> bool {
    skip(i).fragment().starts_with(s)
}

/// A raw word `[A-Za-z_][A-Za-z0-9_]*`, keyword or not (no whitespace skipped).
pub(super) fn word(i: In) -> PResult<In> {
    recognize((satisfy(is_ident_start), take_while(is_ident_char))).parse(i)
}

/// The next word, if the next token is one.
pub(super) fn peek_word<'a>(i: In<'a>) -> Option<&'a str> {
    word(skip(i)).ok().map(|(_, w)| *w.fragment())
}

/// The punctuation `s` if it comes next; builds no error (for optional tokens).
pub(super) fn eat<'a>(i: In<'a>, s: &str) -> Option<(In<'a>, Span)> {
    let i = skip(i);
    if !i.fragment().starts_with(s) {
        return None;
    }
    let (rest, t) = take::<_, _, PErr>(s.len())(i).ok()?;
    Some((rest, span_of(t)))
}

/// The keyword `k` if it comes next; builds no error.
pub(super) fn eat_kw<'a>(i: In<'a>, k: &str) -> Option<(In<'a>, Span)> {
    let (rest, w) = word(skip(i)).ok()?;
    (*w.fragment() == k).then(|| (rest, span_of(w)))
}

/// The punctuation `s`.
pub(super) fn sym<'a>(s: &'static str) -> impl Fn(In<'a>) -> PResult<'a, Span> {
    move |i| match eat(i, s) {
        Some(ok) => Ok(ok),
        None => fail(expected(i, &format!("`{s}`"))),
    }
}

/// The keyword `k`.
pub(super) fn kw<'a>(k: &'static str) -> impl Fn(In<'a>) -> PResult<'a, Span> {
    move |i| match eat_kw(i, k) {
        Some(ok) => Ok(ok),
        None => fail(expected(i, &format!("`{k}`"))),
    }
}

/// `p`, committed, if the optional token `lead` (from [`eat`] or [`eat_kw`]) was found at `i`.
pub(super) fn then<'a, T>(
    i: In<'a>,
    lead: Option<(In<'a>, Span)>,
    p: impl FnMut(In<'a>) -> PResult<'a, T>,
) -> PResult<'a, Option<T>> {
    match lead {
        None => Ok((i, None)),
        Some((rest, _)) => cut(p).parse(rest).map(|(rest, v)| (rest, Some(v))),
    }
}

/// A name: a word that is not a keyword.
pub(super) fn ident(i: In) -> PResult<Ident> {
    match word(skip(i)) {
        Ok((_, w)) if is_keyword(w.fragment()) => fail(keyword_as_name(w)),
        Ok((rest, w)) => Ok((
            rest,
            Ident {
                name: w.fragment().to_string(),
                span: span_of(w),
            },
        )),
        Err(_) => fail(expected(i, "identifier")),
    }
}

/// The `;` ending a statement; the error points just after the statement.
pub(super) fn semi(i: In) -> PResult<Span> {
    if let Some(ok) = eat(i, ";") {
        return Ok(ok);
    }
    let next = found(i);
    if next.stray.is_some() {
        return fail(expected(i, "`;`"));
    }
    let here = Span::new(pos(i), pos(i));
    let mut diag = Diagnostic::new("expected `;`", here, "expected `;` after this statement");
    let gap = &i.fragment()[..next.span.start.saturating_sub(pos(i))];
    if !next.eof && !gap.contains('\n') {
        diag = diag.with_note(next.span, format!("unexpected {}", next.desc));
    }
    fail(PErr {
        diag: Box::new(diag),
        eof: next.eof,
    })
}

/// A string literal `"..."` (no escapes, no newlines): its text and span with the quotes.
pub(super) fn string(i: In) -> PResult<(String, Span)> {
    let Ok((rest, _)) = char::<_, PErr>('"')(skip(i)) else {
        return fail(expected(i, "string"));
    };
    let i = skip(i);
    let (rest, body) = take_till::<_, _, PErr>(|c| c == '"' || c == '\n')(rest)?;
    match char::<_, PErr>('"')(rest) {
        Ok((rest, _)) => Ok((
            rest,
            (body.fragment().to_string(), Span::new(pos(i), pos(rest))),
        )),
        Err(_) => abort(unterminated_string(i)),
    }
}

/// A string whose closing quote is missing.
fn unterminated_string(open: In) -> Diagnostic {
    let quote = Span::new(pos(open), pos(open) + 1);
    Diagnostic::new("unterminated string", quote, "this string is never closed")
        .with_help("a string ends with `\"` on the same line")
}

/// A number literal: `128`, `0.5`, `1e-6`, `2.5E+3`. Stops before `..` (`0..4`).
pub(super) fn number(i: In) -> PResult<Expr> {
    let start = skip(i);
    let Ok((rest, _)) = digit1::<_, PErr>(start) else {
        return fail(expected(i, "number"));
    };
    let (rest, frac) = fraction(start, rest)?;
    let (rest, exp) = exponent(start, rest)?;
    no_suffix(start, rest)?;
    let span = Span::new(pos(start), pos(rest));
    let value = number_value(start, rest)?;
    Ok((
        rest,
        Expr {
            kind: ExprKind::Num {
                value,
                is_int: !frac && !exp,
            },
            span,
        },
    ))
}

/// The optional `.digits` of a number at `i`; `..` is left alone.
fn fraction<'a>(start: In<'a>, i: In<'a>) -> PResult<'a, bool> {
    if !i.fragment().starts_with('.') || i.fragment().starts_with("..") {
        return Ok((i, false));
    }
    let (rest, _) = take::<_, _, PErr>(1usize)(i)?;
    match digit1::<_, PErr>(rest) {
        Ok((rest, _)) => Ok((rest, true)),
        Err(_) => abort(bad_number(
            start,
            rest,
            "expected digits after the decimal point",
        )),
    }
}

/// The optional exponent `e`, sign, digits of a number at `i`.
fn exponent<'a>(start: In<'a>, i: In<'a>) -> PResult<'a, bool> {
    let Ok((rest, _)) = one_of::<_, _, PErr>("eE")(i) else {
        return Ok((i, false));
    };
    let (rest, _) = opt(one_of::<_, _, PErr>("+-")).parse(rest)?;
    match digit1::<_, PErr>(rest) {
        Ok((rest, _)) => Ok((rest, true)),
        Err(_) => abort(bad_number(
            start,
            rest,
            "expected digits after the exponent",
        )),
    }
}

/// A number must not run into letters, digits or another `.` (`12abc`, `1.2.3`, `0x10`).
fn no_suffix<'a>(start: In<'a>, i: In<'a>) -> PResult<'a, ()> {
    let s = *i.fragment();
    let glued = s.starts_with(is_ident_char) || (s.starts_with('.') && !s.starts_with(".."));
    if !glued {
        return Ok((i, ()));
    }
    let end = bad_end(start, i) - pos(i);
    let label = format!("a number cannot be followed by `{}`", short(&s[..end]));
    let mut err = bad_number(start, i, &label);
    if s.starts_with(['x', 'X', 'b', 'o']) && start.fragment().starts_with('0') {
        err = err.with_help("only decimal numbers are supported");
    }
    abort(err)
}

/// The value of the well-formed number from `start` to `end`.
fn number_value<'a>(start: In<'a>, end: In<'a>) -> Result<f64, nom::Err<PErr>> {
    let text = &start.fragment()[..pos(end) - pos(start)];
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(nom::Err::Failure(
            bad_number(start, end, "this number is too large").into(),
        )),
    }
}

/// "bad number" covering the malformed token from `start` (at least up to `at`).
fn bad_number(start: In, at: In, label: &str) -> Diagnostic {
    let end = bad_end(start, at).max(pos(at));
    Diagnostic::new("bad number", Span::new(pos(start), end), label)
}

/// The end of the run of letters, digits and dots from `start`, or from `at` if longer.
fn bad_end(start: In, at: In) -> usize {
    let run = |t: In| {
        let s = *t.fragment();
        pos(t)
            + s.find(|c: char| !is_ident_char(c) && c != '.')
                .unwrap_or(s.len())
    };
    run(start).max(run(at))
}
