//! The Supabase store's settings: [`SupabaseConfig`] as given,
//! [`SupabaseSettings`] once checked.

use super::refuse_unless_service;
use crate::error::{Error, ErrorKind, Result};
use crate::store::settings::{Secret, parse_url};

/// What a project URL should look like, for messages.
pub(crate) const URL_EXPECTED: &str =
    "the project URL, an http:// or https:// URL such as https://<project-ref>.supabase.co";

/// Connection settings for Supabase Storage's REST API, as given;
/// [`SupabaseConfig::build`] checks them.
///
/// `Debug` hides both keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SupabaseConfig {
    /// Project URL (`https://<ref>.supabase.co`); a trailing `/` or
    /// `/storage/v1` is dropped. The API is under `{url}/storage/v1`.
    pub url: String,
    /// The `service_role` or secret (`sb_secret_…`) key, sent as
    /// `Authorization: Bearer` (and as `apikey` without a publishable key).
    pub secret_key: Secret,
    /// The publishable (or legacy `anon`) key for the `apikey` header.
    pub publishable_key: Option<Secret>,
}

/// The names messages give each value of a [`SupabaseConfig`]: the
/// variables it was read from (`SUPABASE_URL`, …) or plain words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SupabaseNames {
    /// The project URL's name.
    pub url: &'static str,
    /// The secret key's name.
    pub secret_key: &'static str,
    /// The publishable key's name.
    pub publishable_key: &'static str,
}

impl SupabaseNames {
    /// Plain words, for settings that came from code rather than variables.
    pub const PLAIN: SupabaseNames = SupabaseNames {
        url: "supabase project URL",
        secret_key: "supabase secret key",
        publishable_key: "supabase publishable key",
    };
}

impl SupabaseConfig {
    /// Check every value once, naming each bad value by `names`: the URL is
    /// a plain `http(s)://` URL, the keys are printable ASCII without spaces
    /// (they travel in HTTP headers), and the secret key is a
    /// `service_role` JWT or an `sb_secret_…` key (see the
    /// [store's docs](super)). Messages never show a key.
    pub fn build(&self, names: &SupabaseNames) -> Result<SupabaseSettings> {
        let url = parse_url(names.url, URL_EXPECTED, self.url.trim())?;
        let url = url.strip_suffix("/storage/v1").unwrap_or(&url).to_owned();
        let secret = self.secret_key.expose().trim();
        let publishable = self
            .publishable_key
            .as_ref()
            .map(|k| k.expose().trim())
            .filter(|k| !k.is_empty());
        if secret.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{}: expected the service_role key or a secret key (sb_secret_...), got \
                     nothing",
                    names.secret_key
                ),
            ));
        }
        let header_safe = |key: &str| key.bytes().all(|b| b.is_ascii_graphic());
        for (name, key) in [
            (names.secret_key, Some(secret)),
            (names.publishable_key, publishable),
        ] {
            if key.is_some_and(|k| !header_safe(k)) {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "{name}: expected a key of printable ASCII characters without spaces, \
                         got something else (value not shown)"
                    ),
                ));
            }
        }
        if let Some(why) = refuse_unless_service(secret) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("{}: {why}", names.secret_key),
            ));
        }
        Ok(SupabaseSettings {
            url,
            secret_key: Secret::new(secret),
            publishable_key: publishable.map(Secret::new),
        })
    }
}

/// Checked connection settings for Supabase Storage
/// ([`SupabaseConfig::build`]).
///
/// `Debug` hides both keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SupabaseSettings {
    pub(in crate::store) url: String,
    pub(in crate::store) secret_key: Secret,
    pub(in crate::store) publishable_key: Option<Secret>,
}

impl SupabaseSettings {
    /// The project URL, without a trailing `/` or `/storage/v1`.
    pub fn url(&self) -> &str {
        &self.url
    }
}
