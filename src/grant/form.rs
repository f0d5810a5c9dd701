//! Parsing `application/x-www-form-urlencoded` bodies: a pure function, so
//! it can be fuzzed. A parameter given twice is an error (RFC 6749 3.2),
//! except `resource`, which RFC 8707 lets a client repeat: the form keeps at
//! most [`MAX_RESOURCES`] of its values and refuses more as `invalid_target`.
//! Reading the body and checking its content type is the server's
//! (`server::form`); what the parameters mean is [`super::TokenRequest`]'s.

use std::collections::HashMap;

use super::Refusal;

/// The one parameter a client may repeat (RFC 8707 section 2).
pub const RESOURCE: &str = "resource";
/// The most `resource` values a form may carry; more is `invalid_target`.
pub const MAX_RESOURCES: usize = 8;

/// The parameters of a form body, each present once but `resource`.
#[derive(Default, PartialEq, Eq)]
pub struct Form(HashMap<String, String>, Vec<String>);

impl std::fmt::Debug for Form {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values hold tokens: show only the parameter names.
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Form {
    /// Parses a body.
    pub fn parse(body: &[u8]) -> Result<Self, Refusal> {
        // Every byte string is a form (invalid UTF-8 decodes lossily), as
        // serde_urlencoded read it before; without its serde layer and the
        // pairs it collected first.
        let mut map = HashMap::with_capacity(8);
        let mut resources = Vec::new();
        for (k, v) in form_urlencoded::parse(body) {
            let (k, v) = (k.into_owned(), v.into_owned());
            if k == RESOURCE {
                if resources.len() == MAX_RESOURCES {
                    return Err(Refusal::InvalidTarget(format!(
                        "at most {MAX_RESOURCES} resource parameters are read, and writ mints a token for one"
                    )));
                }
                resources.push(v.clone());
                map.entry(k).or_insert(v);
                continue;
            }
            if map.contains_key(&k) {
                // The name is the client's text: named only when it is one
                // of the plain names writ reads, never echoed otherwise.
                let named = k.len() <= 32 && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
                return Err(Refusal::InvalidRequest(if named {
                    format!("parameter {k} is repeated")
                } else {
                    "a parameter is repeated".into()
                }));
            }
            map.insert(k, v);
        }
        Ok(Self(map, resources))
    }

    /// Every non-empty value of `resource`, in the order sent (empty counts
    /// as absent, RFC 6749 3.1).
    pub fn resources(&self) -> impl Iterator<Item = &str> {
        self.1.iter().map(String::as_str).filter(|v| !v.is_empty())
    }

    /// An optional parameter; empty counts as absent (RFC 6749 3.1).
    pub fn optional(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A required parameter.
    pub fn required(&self, name: &str) -> Result<&str, Refusal> {
        self.optional(name)
            .ok_or_else(|| Refusal::InvalidRequest(format!("parameter {name} is required")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameter_is_invalid_request() {
        assert!(matches!(
            Form::parse(b"a=1&a=2"),
            Err(Refusal::InvalidRequest(_))
        ));
    }

    #[test]
    fn resource_may_be_repeated_up_to_the_limit() {
        let f =
            Form::parse(b"resource=https%3A%2F%2Fa&resource=&resource=https%3A%2F%2Fb").unwrap();
        assert_eq!(
            f.resources().collect::<Vec<_>>(),
            ["https://a", "https://b"]
        );
        let most = ["resource=x"; MAX_RESOURCES].join("&");
        assert_eq!(
            Form::parse(most.as_bytes()).unwrap().resources().count(),
            MAX_RESOURCES
        );
        let more = ["resource=x"; MAX_RESOURCES + 1].join("&");
        assert!(matches!(
            Form::parse(more.as_bytes()),
            Err(Refusal::InvalidTarget(_))
        ));
    }

    #[test]
    fn a_hostile_parameter_name_is_not_echoed() {
        let Err(Refusal::InvalidRequest(why)) = Form::parse(b"a%0Ab=1&a%0Ab=2") else {
            panic!("a repeated parameter must be refused");
        };
        assert!(!why.contains('\n') && !why.contains("a\nb"), "{why}");
        let Err(Refusal::InvalidRequest(why)) = Form::parse(b"scope=a&scope=b") else {
            panic!("a repeated parameter must be refused");
        };
        assert!(why.contains("scope"), "{why}");
    }

    #[test]
    fn empty_value_counts_as_absent() {
        let f = Form::parse(b"a=&b=x%20y").unwrap();
        assert_eq!(f.optional("a"), None);
        assert_eq!(f.required("b").unwrap(), "x y");
        assert!(f.required("c").is_err());
    }

    mod properties {
        //! Property tests (issue 11, item 18): any body is parsed or refused
        //! as `invalid_request`, never a panic; encoded forms round-trip.

        use std::collections::BTreeMap;

        use proptest::prelude::*;

        use super::*;

        fn bytes() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                9 => prop::collection::vec(any::<u8>(), 0..1024),
                1 => prop::collection::vec(any::<u8>(), 0..=64 * 1024),
            ]
        }

        /// Bodies made of form-looking pieces: names, `=`, `&`, escapes.
        fn form_like() -> impl Strategy<Value = Vec<u8>> {
            let piece = prop_oneof![
                Just(b"=".to_vec()),
                Just(b"&".to_vec()),
                Just(b"+".to_vec()),
                Just(b"%".to_vec()),
                Just(b"%0A".to_vec()),
                Just(b"%FF".to_vec()),
                Just(b"%C3%A9".to_vec()),
                Just(b"scope".to_vec()),
                Just(b"grant_type".to_vec()),
                prop::collection::vec(any::<u8>(), 0..8),
            ];
            prop::collection::vec(piece, 0..64).prop_map(|p| p.concat())
        }

        proptest! {
            #![proptest_config(crate::proptest_config(256))]

            #[test]
            fn any_body_parses_or_is_invalid_request(body in prop_oneof![bytes(), form_like()]) {
                match Form::parse(&body) {
                    Ok(form) => {
                        for (k, v) in &form.0 {
                            prop_assert_eq!(form.optional(k), Some(v.as_str()).filter(|v| !v.is_empty()));
                        }
                    }
                    Err(Refusal::InvalidRequest(why) | Refusal::InvalidTarget(why)) => {
                        // A refusal never echoes control characters.
                        prop_assert!(!why.chars().any(char::is_control), "{why:?}");
                    }
                    Err(other) => prop_assert!(false, "unexpected refusal {other:?}"),
                }
            }

            #[test]
            fn encoded_forms_round_trip(params in prop::collection::btree_map(".{0,16}", ".{0,32}", 0..12)) {
                let body = serde_urlencoded::to_string(&params).unwrap_or_default();
                let form = Form::parse(body.as_bytes());
                prop_assert!(form.is_ok(), "{body:?}");
                let form = form.unwrap_or_default();
                let parsed: BTreeMap<String, String> = form.0.into_iter().collect();
                prop_assert_eq!(parsed, params);
            }

            #[test]
            fn a_repeated_parameter_is_refused(
                params in prop::collection::btree_map(".{0,16}", ".{0,32}", 1..8),
                pick in any::<prop::sample::Index>(),
                value in ".{0,32}",
            ) {
                let mut pairs: Vec<(String, String)> = params.into_iter().collect();
                let (name, _) = pick.get(&pairs).clone();
                pairs.push((name, value));
                let body = serde_urlencoded::to_string(&pairs).unwrap_or_default();
                prop_assert!(matches!(Form::parse(body.as_bytes()), Err(Refusal::InvalidRequest(_))));
            }
        }
    }
}
