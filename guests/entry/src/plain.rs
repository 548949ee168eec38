//! A fast reader of profile bodies (`join`, `alive`, `metadata`) in the
//! *plain* form every honest writer produces: `serde_json`'s compact
//! encoding of `{"inc":N,"addr":"…","meta":[["k","v"],…]}`, with
//! `,"signing_key":"…"` before the closing brace on a `join`, every string
//! printable ASCII without a quote or a backslash.
//!
//! Every receiver reads every `join` body several times (the key binding,
//! the key index, the profile); through `serde_json` that is a large part
//! of a simulated node's CPU. [`scan`] accepts only bodies of exactly that
//! grammar (no whitespace, no escape, the fields in that order, each once,
//! `inc` a `u64` without a sign, a fraction, an exponent or a leading
//! zero) and answers `None` for anything else, which callers then read
//! with `serde_json` as before. Every body it accepts is a JSON object
//! that `serde_json` reads to the same fields, so a caller's answer never
//! depends on which path read the body.

/// The fields of a plain profile body, borrowed from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plain<'a> {
    /// `inc`.
    pub inc: u64,
    /// `addr`.
    pub addr: &'a str,
    /// `signing_key`, when the body has the field.
    pub signing_key: Option<&'a str>,
}

/// Reads `body` if it is a plain profile body, calling `meta` with each
/// `meta` pair in order; `None` (having perhaps called `meta` for some
/// pairs) when it is not.
pub fn scan<'a>(body: &'a [u8], mut meta: impl FnMut(&'a str, &'a str)) -> Option<Plain<'a>> {
    let mut r = Reader { rest: body };
    r.lit(b"{\"inc\":")?;
    let inc = r.u64()?;
    r.lit(b",\"addr\":")?;
    let addr = r.string()?;
    r.lit(b",\"meta\":[")?;
    if !r.eat(b']') {
        loop {
            r.lit(b"[")?;
            let k = r.string()?;
            r.lit(b",")?;
            let v = r.string()?;
            r.lit(b"]")?;
            meta(k, v);
            if r.eat(b']') {
                break;
            }
            r.lit(b",")?;
        }
    }
    let signing_key = if r.eat(b',') {
        r.lit(b"\"signing_key\":")?;
        Some(r.string()?)
    } else {
        None
    };
    r.lit(b"}")?;
    r.rest.is_empty().then_some(Plain {
        inc,
        addr,
        signing_key,
    })
}

/// A cursor over the body.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Consumes `lit` if the body continues with it.
    fn lit(&mut self, lit: &[u8]) -> Option<()> {
        self.rest = self.rest.strip_prefix(lit)?;
        Some(())
    }

    /// Consumes `b` if it is next; whether it was.
    fn eat(&mut self, b: u8) -> bool {
        match self.rest.split_first() {
            Some((&first, rest)) if first == b => {
                self.rest = rest;
                true
            }
            _ => false,
        }
    }

    /// A `u64` in JSON's integer syntax: `0`, or digits not starting with
    /// `0`, with no sign, fraction or exponent after them.
    fn u64(&mut self) -> Option<u64> {
        let digits = self.rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let (number, rest) = self.rest.split_at_checked(digits)?;
        if number.is_empty() || (number.len() > 1 && number.first() == Some(&b'0')) {
            return None;
        }
        // A fraction or an exponent would make it a float.
        if matches!(rest.first(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        let mut value: u64 = 0;
        for &d in number {
            value = value
                .checked_mul(10)?
                .checked_add(u64::from(d.checked_sub(b'0')?))?;
        }
        self.rest = rest;
        Some(value)
    }

    /// A string of printable ASCII without `"` or `\` (so no escape), in
    /// quotes.
    fn string(&mut self) -> Option<&'a str> {
        self.lit(b"\"")?;
        let len = self
            .rest
            .iter()
            .take_while(|&&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
            .count();
        let (text, rest) = self.rest.split_at_checked(len)?;
        self.rest = rest;
        self.lit(b"\"")?;
        // Printable ASCII is UTF-8.
        std::str::from_utf8(text).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Profile {
        inc: u64,
        addr: String,
        #[serde(default)]
        meta: Vec<(String, String)>,
        #[serde(default)]
        signing_key: Option<String>,
    }

    fn scanned(body: &str) -> Option<Profile> {
        let mut meta = Vec::new();
        let p = scan(body.as_bytes(), |k, v| {
            meta.push((k.to_owned(), v.to_owned()))
        })?;
        Some(Profile {
            inc: p.inc,
            addr: p.addr.to_owned(),
            meta,
            signing_key: p.signing_key.map(str::to_owned),
        })
    }

    #[test]
    fn reads_what_serde_json_writes_and_agrees_with_it() {
        let key = "ab".repeat(32);
        let accepted = [
            format!("{{\"inc\":1,\"addr\":\"10.0.0.1:7946\",\"meta\":[],\"signing_key\":\"{key}\"}}"),
            "{\"inc\":0,\"addr\":\"\",\"meta\":[]}".to_string(),
            "{\"inc\":18446744073709551615,\"addr\":\"a\",\"meta\":[[\"k\",\"v\"],[\"\",\"x y~\"]]}"
                .to_string(),
        ];
        for body in &accepted {
            let fast = scanned(body).expect("plain");
            let slow: Profile = serde_json::from_str(body).expect("json");
            assert_eq!(fast, slow, "{body}");
        }
    }

    /// Random edits of plain bodies: whatever `scan` accepts, serde_json
    /// reads to the same fields (the guarantee callers rely on).
    #[test]
    fn whatever_it_accepts_serde_json_reads_the_same() {
        let seeds = [
            "{\"inc\":12,\"addr\":\"10.0.0.1:7946\",\"meta\":[[\"k\",\"v\"],[\"a\",\"\"]],\"signing_key\":\"0f\"}",
            "{\"inc\":0,\"addr\":\"a\",\"meta\":[]}",
        ];
        let alphabet = b"{}[],:\"\\ 0123456789.-eEaks_\xff\t";
        let mut next = crate::test_rng(0x9e37_79b9_7f4a_7c15);
        let (mut accepted, mut refused) = (0, 0);
        for round in 0..40_000 {
            let mut body = seeds[round % seeds.len()].as_bytes().to_vec();
            for _ in 0..1 + next(3) {
                let at = next(body.len() + 1);
                let b = alphabet[next(alphabet.len())];
                match next(3) {
                    0 if at < body.len() => body[at] = b,
                    1 if at < body.len() => {
                        body.remove(at);
                    }
                    _ => body.insert(at, b),
                }
            }
            let mut meta = Vec::new();
            let Some(p) = scan(&body, |k, v| meta.push((k.to_owned(), v.to_owned()))) else {
                refused += 1;
                continue;
            };
            accepted += 1;
            let fast = Profile {
                inc: p.inc,
                addr: p.addr.to_owned(),
                meta,
                signing_key: p.signing_key.map(str::to_owned),
            };
            let slow: Profile = serde_json::from_slice(&body).expect("accepted, so JSON");
            assert_eq!(fast, slow, "{}", String::from_utf8_lossy(&body));
        }
        assert!(accepted > 1000 && refused > 1000, "{accepted} / {refused}");
    }

    #[test]
    fn refuses_everything_else() {
        let refused = [
            "",
            "{}",
            "{\"inc\":1,\"addr\":\"a\",\"meta\":[]} ",
            " {\"inc\":1,\"addr\":\"a\",\"meta\":[]}",
            "{\"inc\":1,\"addr\":\"a\",\"meta\":[],}",
            "{\"inc\":01,\"addr\":\"a\",\"meta\":[]}",
            "{\"inc\":-1,\"addr\":\"a\",\"meta\":[]}",
            "{\"inc\":1.0,\"addr\":\"a\",\"meta\":[]}",
            "{\"inc\":1e3,\"addr\":\"a\",\"meta\":[]}",
            "{\"inc\":18446744073709551616,\"addr\":\"a\",\"meta\":[]}",
            "{\"inc\":1,\"addr\":\"a\\u0041\",\"meta\":[]}",
            "{\"inc\":1,\"addr\":\"a\\\"\",\"meta\":[]}",
            "{\"inc\":1,\"addr\":\"\u{e9}\",\"meta\":[]}",
            "{\"inc\":1,\"addr\":\"a\tb\",\"meta\":[]}",
            "{\"inc\":1,\"addr\":\"a\",\"meta\":[[\"k\"]]}",
            "{\"inc\":1,\"addr\":\"a\",\"meta\":[[\"k\",\"v\",\"w\"]]}",
            "{\"inc\":1,\"addr\":\"a\",\"meta\":[[\"k\",\"v\"],]}",
            "{\"inc\":1,\"addr\":\"a\",\"meta\":[],\"signing_key\":\"x\",\"signing_key\":\"y\"}",
            "{\"inc\":1,\"addr\":\"a\",\"meta\":[],\"signing_key\":null}",
            "{\"inc\":1,\"addr\":\"a\",\"meta\":[],\"x\":1}",
            "{\"addr\":\"a\",\"inc\":1,\"meta\":[]}",
            "{\"inc\":1,\"addr\":\"a\"}",
        ];
        for body in refused {
            assert_eq!(scanned(body), None, "{body:?}");
        }
        assert!(scan(b"{\"inc\":1,\"addr\":\"\xff\",\"meta\":[]}", |_, _| ()).is_none());
    }
}
