//! Query string → [`Plan`]: every rule and error of docs/query-language.md §1, the patterns of §2,
//! the times of §3 and, for the library API, the web UI filters of §6.

use super::QueryError;
use super::params::{Param, split};
use super::pattern::{self, Item};
use super::plan::{CallType, Format, Plan, Status};
use super::time;

/// Which surface compiles the query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    /// `cdrq.cdrapi` and the server: exactly the UCM's parameters.
    Cdrapi,
    /// `cdrq.query`: also the web UI filters.
    Library,
}

const CDRAPI_PARAMS: [&str; 9] =
    ["format", "numrecords", "offset", "caller", "callee", "starttime", "endtime", "mindur", "maxdur"];
const WEBUI_PARAMS: [&str; 11] = [
    "callernumber",
    "calleenumber",
    "callername",
    "status",
    "calltype",
    "srctrunk",
    "dsttrunk",
    "actiontype",
    "accountcode",
    "extgroup",
    "order",
];

/// Compiles `query` (a URL or the part after `?`). `now_us` is the instant
/// `now` means; `groups` the extension group names `extGroup` may name.
pub fn compile(query: &str, now_us: i64, surface: Surface, groups: &[String]) -> Result<Plan, QueryError> {
    let params = split(query)?;
    let mut plan = Plan::default();
    let mut seen: Vec<&str> = Vec::new();
    let mut caller = String::new();
    let mut callee = String::new();
    let (mut caller_param, mut callee_param): (Option<&Param>, Option<&Param>) = (None, None);

    for p in &params {
        let key = p.key.as_str();
        let known = CDRAPI_PARAMS.contains(&key) || (surface == Surface::Library && WEBUI_PARAMS.contains(&key));
        if !known {
            return Err(QueryError {
                param: p.name.clone(),
                text: p.name.clone(),
                position: p.position,
                reason: "unknown parameter".into(),
            });
        }
        let repeatable = key == "caller" || key == "callee";
        if !repeatable && seen.contains(&key) {
            return Err(QueryError {
                param: p.name.clone(),
                text: p.name.clone(),
                position: p.position,
                reason: "parameter given twice".into(),
            });
        }
        seen.push(key);
        if p.value.is_empty() {
            if key == "starttime" || key == "endtime" {
                continue; // unbounded
            }
            return Err(p.error(0, "", "empty value"));
        }
        let err = |i: usize, text: &str, reason: &str| p.error(i, text, reason);
        match key {
            "format" => {
                plan.format = Some(match p.value.to_ascii_lowercase().as_str() {
                    "csv" => Format::Csv,
                    "json" => Format::Json,
                    "xml" => Format::Xml,
                    _ => return Err(p.error(0, &p.value, "format must be csv, json or xml")),
                })
            }
            "numrecords" => plan.num_records = Some(number(p)?),
            "offset" => plan.offset = Some(number(p)?),
            "mindur" => plan.min_dur = Some(number(p)?.min(i64::MAX as u64) as i64),
            "maxdur" => plan.max_dur = Some(number(p)?.min(i64::MAX as u64) as i64),
            "caller" | "callee" => {
                // Repeats are joined with ','; errors point into each value.
                pattern::cdrapi_list(&p.value, &err)?;
                let (joined, first) =
                    if key == "caller" { (&mut caller, &mut caller_param) } else { (&mut callee, &mut callee_param) };
                if !joined.is_empty() {
                    joined.push(',');
                }
                joined.push_str(&p.value);
                first.get_or_insert(p);
            }
            "starttime" | "endtime" => {
                if let Some((i, c)) = p.value.char_indices().find(|&(_, c)| !time::allowed(c)) {
                    return Err(p.error(i, c.to_string(), "disallowed character"));
                }
                let at = time::parse(&p.value, now_us).ok_or_else(|| p.error(0, &p.value, "not a time"))?;
                *(if key == "starttime" { &mut plan.start_time } else { &mut plan.end_time }) = Some(at);
            }
            "callernumber" | "calleenumber" => {
                let items = pattern::items(&p.value, &err)?
                    .into_iter()
                    .map(|(at, item)| pattern::webui_item(item, at, &err))
                    .collect::<Result<Vec<Item>, _>>()?;
                *(if key == "callernumber" { &mut plan.caller_number } else { &mut plan.callee_number }) = Some(items);
            }
            "callername" | "srctrunk" | "dsttrunk" | "accountcode" | "extgroup" | "actiontype" => {
                let items: Vec<String> =
                    pattern::items(&p.value, &err)?.into_iter().map(|(_, s)| s.to_string()).collect();
                match key {
                    "callername" => plan.caller_name = Some(items.iter().map(|s| s.to_lowercase()).collect()),
                    "srctrunk" => plan.src_trunk = Some(items),
                    "dsttrunk" => plan.dst_trunk = Some(items),
                    "accountcode" => plan.account_code = Some(items),
                    "actiontype" => plan.action_type = Some(items.iter().map(|s| action_word(s)).collect()),
                    _ => {
                        for (at, name) in pattern::items(&p.value, &err)? {
                            if !groups.iter().any(|g| g == name) {
                                return Err(p.error(at, name, "unknown extension group"));
                            }
                        }
                        plan.ext_group = Some(items);
                    }
                }
            }
            "status" => plan.status = Some(words(p, &err, Status::from_word)?),
            "calltype" => plan.call_type = Some(words(p, &err, CallType::from_word)?),
            "order" => {
                plan.descending = match p.value.to_ascii_lowercase().as_str() {
                    "asc" => false,
                    "desc" => true,
                    _ => return Err(p.error(0, &p.value, "order must be asc or desc")),
                }
            }
            _ => unreachable!("every known parameter is handled"),
        }
    }
    for (joined, param, slot) in [(&caller, caller_param, &mut plan.caller), (&callee, callee_param, &mut plan.callee)]
    {
        if let Some(p) = param {
            // Each repeat was checked on its own; the joined list compiles.
            let err = |i: usize, text: &str, reason: &str| p.error(i, text, reason);
            *slot = Some(pattern::cdrapi_list(joined, &err)?);
        }
    }
    Ok(plan)
}

/// Digits only, as an unbounded count saturated to `u64`.
fn number(p: &Param) -> Result<u64, QueryError> {
    if let Some((i, c)) = p.value.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        return Err(p.error(i, c.to_string(), "not a digit"));
    }
    Ok(p.value.parse::<u64>().unwrap_or(u64::MAX))
}

fn words<T>(
    p: &Param,
    err: &dyn Fn(usize, &str, &str) -> QueryError,
    word: fn(&str) -> Option<T>,
) -> Result<Vec<T>, QueryError> {
    pattern::items(&p.value, err)?
        .into_iter()
        .map(|(at, item)| {
            word(&item.to_ascii_lowercase()).ok_or_else(|| p.error(at, item, "not one of the listed words"))
        })
        .collect()
}

/// `Ring Group` → `RINGGROUP`: the leading word, upper-cased, without
/// spaces and `_`.
pub fn action_word(s: &str) -> String {
    let word = s.split('[').next().unwrap_or(s);
    word.chars().filter(|c| *c != ' ' && *c != '_').flat_map(char::to_uppercase).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cdrapi(q: &str) -> Result<Plan, QueryError> {
        compile(q, 0, Surface::Cdrapi, &[])
    }

    #[test]
    fn the_guides_examples_compile() {
        let p =
            cdrapi("format=csv&caller=5300,5302-5304,_4@&startTime=2013-07-01T00:00:00&endTime=2013-07-31T23:59:59")
                .unwrap();
        assert_eq!(p.format, Some(Format::Csv));
        assert_eq!(p.caller.as_ref().map(Vec::len), Some(3));
        let p = cdrapi("caller=5300&caller=6300-6399&callee=5@&minDur=8&format=json").unwrap();
        assert_eq!(p.caller.as_ref().map(Vec::len), Some(2));
        assert_eq!(p.min_dur, Some(8));
    }

    #[test]
    fn errors_name_parameter_and_position() {
        let e = cdrapi("caler=5300").unwrap_err();
        assert_eq!((e.param.as_str(), e.position, e.reason.as_str()), ("caler", 0, "unknown parameter"));
        let e = cdrapi("format=json&minDur=1a").unwrap_err();
        assert_eq!((e.param.as_str(), e.position, e.text.as_str()), ("minDur", 20, "a"));
        assert_eq!(cdrapi("offset=1&offset=2").unwrap_err().reason, "parameter given twice");
        assert_eq!(cdrapi("OFFSET=1&offset=2").unwrap_err().reason, "parameter given twice");
        assert_eq!(cdrapi("caller=").unwrap_err().reason, "empty value");
        assert!(cdrapi("startTime=&endTime=").is_ok());
        assert_eq!(cdrapi("format=html").unwrap_err().param, "format");
        assert_eq!(cdrapi("callerNumber=3XXX").unwrap_err().reason, "unknown parameter");
        assert!(compile("callerNumber=3XXX", 0, Surface::Library, &[]).is_ok());
        assert_eq!(cdrapi("caller=5300+1").unwrap_err().position, 11);
        assert_eq!(cdrapi("startTime=2013-02-30").unwrap_err().reason, "not a time");
    }

    #[test]
    fn action_words() {
        assert_eq!(action_word("Ring Group"), "RINGGROUP");
        assert_eq!(action_word("RINGGROUP[6400]"), "RINGGROUP");
        assert_eq!(action_word("follow_me"), "FOLLOWME");
    }
}
