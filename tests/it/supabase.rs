//! Supabase Storage's REST API as the hot store, against the harness's
//! Supabase server: the conformance suite, error shapes and kinds, retries,
//! batch delete, the key headers, and blobs moved end to end.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use coldsweep::catalog::BlobState;
use coldsweep::config::{HotConfig, SupabaseConfig};
use coldsweep::store::supabase::MAX_DELETE_BATCH;
use coldsweep::store::{Location, PutOptions, Store, SupabaseStore, exists, hot_store, meta};
use coldsweep::{ErrorKind, ObjectKey, task_html_object_path};
use hyper::Method;

use crate::harness::supabase::{Fault, SupabaseServer};
use crate::pipeline::{Backend, HOT_BUCKET, Rig, cold_location, gzip, hot_location, sha256_hex};
use crate::store_conformance::{Keeps, run_all};

/// Supabase keeps the type and user metadata, not the encoding; its ETag
/// is an MD5 only for small uploads, so none is promised.
pub(crate) const SUPABASE_KEEPS: Keeps = Keeps {
    md5_etag: false,
    content_type: true,
    content_encoding: false,
    user_metadata: true,
};

const BUCKET: &str = "task-html";
/// A second bucket, for the conformance suite's bulk deletes.
const OTHER_BUCKET: &str = "task-html-old";

async fn server() -> SupabaseServer {
    let server = SupabaseServer::start().await;
    server.create_bucket(BUCKET);
    server.create_bucket(OTHER_BUCKET);
    server
}

/// A store with quick retries, so tests that use them up stay fast.
fn store(config: &SupabaseConfig) -> SupabaseStore {
    SupabaseStore::new(config).unwrap().with_retries(
        3,
        Duration::from_millis(1),
        Duration::from_millis(5),
    )
}

fn at(key: &str) -> Location {
    Location::new(BUCKET, ObjectKey::new(key).unwrap())
}

#[tokio::test]
async fn supabase_store_conforms() {
    let server = server().await;
    let store = SupabaseStore::new(&server.config()).unwrap();
    assert_eq!(store.provider(), "supabase");
    run_all(&store, BUCKET, OTHER_BUCKET, SUPABASE_KEEPS).await;
}

#[tokio::test]
async fn supabase_store_conforms_when_missing_is_a_real_404() {
    let server = server().await;
    server.answer_missing_with_404(true);
    let store = SupabaseStore::new(&server.config()).unwrap();
    run_all(&store, BUCKET, OTHER_BUCKET, SUPABASE_KEEPS).await;
    assert!(
        server.requests().iter().any(|r| r.status == 404),
        "the real-404 answers were never exercised"
    );
}

#[tokio::test]
async fn a_missing_object_is_not_found_and_a_missing_bucket_never_is() {
    let server = server().await;
    let store = store(&server.config());
    let missing_bucket = Location::new("no-such-bucket", ObjectKey::new("k").unwrap());
    for (real_404, status) in [(false, 400), (true, 404)] {
        server.answer_missing_with_404(real_404);
        server.clear_requests();
        let missing_object = at("never/written.gz");
        let err = store.get(&missing_object).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        let err = store.head(&missing_object).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        assert!(!exists(&store, &missing_object).await.unwrap());
        store.delete(&missing_object).await.unwrap();

        // A missing bucket says nothing about the objects meant to be in it.
        let err = store.get(&missing_bucket).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BucketNotFound, "{err}");
        let err = store.head(&missing_bucket).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BucketNotFound, "{err}");
        let err = exists(&store, &missing_bucket).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BucketNotFound, "{err}");
        // Storage's single delete answers NoSuchKey whatever is missing.
        store.delete(&missing_bucket).await.unwrap();
        let err = store.ping("no-such-bucket").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BucketNotFound, "{err}");
        assert!(!err.is_retryable());
        let requests = server.requests();
        // One request per call: neither is worth a retry.
        assert_eq!(requests.len(), 2 * 4 + 1, "{requests:#?}");
        for r in &requests {
            assert_eq!(r.status, status, "{} {}", r.method, r.path);
        }
    }
}

#[tokio::test]
async fn a_404_that_is_not_from_storage_is_not_not_found() {
    let server = server().await;
    server.seed(BUCKET, "k", b"kept");
    let mut config = server.config();
    config.url = format!("{}/not-the-project", server.url);
    let store = store(&config);
    let errors = [
        store.get(&at("k")).await.unwrap_err(),
        store.head(&at("k")).await.unwrap_err(),
        store.delete(&at("k")).await.unwrap_err(),
        store.ping(BUCKET).await.unwrap_err(),
    ];
    for err in errors {
        assert_eq!(err.kind(), ErrorKind::Unexpected, "{err}");
        assert!(err.to_string().contains("SUPABASE_URL"), "{err}");
    }
    assert!(server.requests().iter().all(|r| r.status == 404));
    assert_eq!(server.object(BUCKET, "k").as_deref(), Some(&b"kept"[..]));
}

#[tokio::test]
async fn refused_keys_are_permission_denied_and_never_shown() {
    let server = server().await;
    server.seed(BUCKET, "k", b"kept");
    let wrong_service_role = format!("{}x", server.service_role_key);
    let cases = [
        // Gateway passes (publishable key good), Storage refuses the token:
        // HTTP 400 carrying "statusCode":"403".
        (
            server.config_with(&wrong_service_role, Some(&server.publishable_key)),
            400,
        ),
        // The gateway refuses the apikey: HTTP 401.
        (
            server.config_with(&server.service_role_key, Some("sb_publishable_wrong-0000")),
            401,
        ),
        (server.config_with("sb_secret_wrong-0000", None), 401),
    ];
    for (config, status) in cases {
        server.clear_requests();
        let store = store(&config);
        let errors = [
            store.ping(BUCKET).await.unwrap_err(),
            store
                .put(&at("new"), Bytes::from_static(b"x"), &PutOptions::default())
                .await
                .unwrap_err(),
            store.get(&at("k")).await.unwrap_err(),
            store.head(&at("k")).await.unwrap_err(),
            store.delete(&at("k")).await.unwrap_err(),
            store.delete_many(&[at("k")]).await.remove(0).unwrap_err(),
        ];
        let keys = [
            config.secret_key.expose().to_owned(),
            config
                .publishable_key
                .as_ref()
                .map(|k| k.expose().to_owned())
                .unwrap_or_default(),
            server.service_role_key.clone(),
            server.secret_key.clone(),
            server.publishable_key.clone(),
        ];
        for err in errors {
            assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
            assert!(!err.is_retryable());
            let shown = format!("{err} {err:?}");
            for key in keys.iter().filter(|k| !k.is_empty()) {
                assert!(!shown.contains(key.as_str()), "key in error: {shown}");
            }
        }
        let requests = server.requests();
        assert_eq!(requests.len(), 6, "refusals are not retried");
        assert!(requests.iter().all(|r| r.status == status), "{requests:#?}");
    }
    assert_eq!(server.object(BUCKET, "k").as_deref(), Some(&b"kept"[..]));
    assert_eq!(server.object_count(BUCKET), 1, "nothing was written");
}

#[tokio::test]
async fn keys_without_the_service_role_are_refused_before_any_request() {
    let server = server().await;
    server.seed(BUCKET, "k", b"kept");
    let cases = [
        (
            server.mint_jwt(Some("authenticated")),
            r#"role "authenticated""#,
        ),
        (server.mint_jwt(Some("anon")), r#"role "anon""#),
        (server.mint_jwt(None), "no role claim"),
        (server.publishable_key.clone(), "publishable key"),
        (format!("opaque-{}", server.secret_key), "neither a JWT"),
    ];
    for (key, found) in cases {
        let mut errors = vec![SupabaseStore::new(&server.config_with(&key, None)).unwrap_err()];
        let vars = BTreeMap::from([
            ("HOT_STORE", "supabase".to_owned()),
            ("SUPABASE_URL", server.url.clone()),
            ("SUPABASE_SERVICE_ROLE_KEY", key.clone()),
        ]);
        errors.push(HotConfig::from_lookup(|name| vars.get(name).cloned()).unwrap_err());
        for err in errors {
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
            let shown = format!("{err} {err:?}");
            assert!(shown.contains("SUPABASE_SERVICE_ROLE_KEY"), "{shown}");
            assert!(shown.contains(found), "{found:?} not in {shown}");
            assert!(!shown.contains(&key), "key in {shown}");
        }
    }
    assert!(server.requests().is_empty(), "{:#?}", server.requests());
    // A token the server signed with the service role is as good as its key.
    let minted = server.mint_jwt(Some("service_role"));
    let store = store(&server.config_with(&minted, Some(&server.publishable_key)));
    assert_eq!(store.get(&at("k")).await.unwrap(), &b"kept"[..]);
}

/// What the real server does for a validly signed token that is not the
/// service role: Row Level Security hides everything, as if missing.
#[tokio::test]
async fn the_server_hides_everything_from_tokens_without_the_service_role() {
    let server = server().await;
    server.seed(BUCKET, "k", b"kept");
    let client = reqwest::Client::new();
    let api = format!("{}/storage/v1", server.url);
    let send = |method: reqwest::Method, path: &str, bearer: Option<&str>, body: &str| {
        let mut request = client
            .request(method, format!("{api}/{path}"))
            .header("apikey", &server.publishable_key)
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(bearer) = bearer {
            request = request.header("authorization", format!("Bearer {bearer}"));
        }
        async move {
            let answer = request.send().await.unwrap();
            let status = answer.status().as_u16();
            let body: serde_json::Value =
                serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap();
            (status, body)
        }
    };
    let batch = r#"{"prefixes":["k"]}"#;
    let low = [
        server.mint_jwt(Some("authenticated")),
        server.mint_jwt(None),
        server.mint_jwt(Some("anon")),
        server.publishable_key.clone(),
    ];
    for token in &low {
        let token = Some(token.as_str());
        for path in [
            format!("object/authenticated/{BUCKET}/k"),
            format!("object/info/authenticated/{BUCKET}/k"),
        ] {
            let (status, body) = send(Method::GET, &path, token, "").await;
            assert_eq!(
                (status, &body["statusCode"]),
                (400, &"404".into()),
                "{path}"
            );
            assert_eq!(body["code"], "NoSuchKey", "{path}: {body}");
        }
        let (status, body) = send(Method::GET, &format!("bucket/{BUCKET}"), token, "").await;
        assert_eq!((status, &body["code"]), (400, &"NoSuchBucket".into()));
        let (status, body) = send(Method::DELETE, &format!("object/{BUCKET}/k"), token, "").await;
        assert_eq!((status, &body["statusCode"]), (400, &"403".into()));
        assert_eq!(body["code"], "AccessDenied");
        let (status, body) = send(Method::DELETE, &format!("object/{BUCKET}"), token, batch).await;
        assert_eq!((status, body), (200, serde_json::json!([])));
        assert_eq!(server.object(BUCKET, "k").as_deref(), Some(&b"kept"[..]));
    }

    // No Authorization header at all.
    let (status, body) = send(Method::GET, &format!("bucket/{BUCKET}"), None, "").await;
    assert_eq!((status, &body["statusCode"]), (400, &"400".into()));
    assert_eq!(body["code"], "InvalidRequest");
    // Signed with another secret, or expired: refused, not hidden.
    let foreign = SupabaseServer::start().await.mint_jwt(Some("service_role"));
    let expired = server.mint_jwt_claims(&serde_json::json!({"role": "service_role", "exp": 1}));
    for (token, why) in [
        (foreign, "invalid signature"),
        (expired, r#""exp" claim timestamp check failed"#),
    ] {
        let path = format!("object/authenticated/{BUCKET}/k");
        let (status, body) = send(Method::GET, &path, Some(&token), "").await;
        assert_eq!((status, &body["statusCode"]), (400, &"403".into()));
        assert_eq!(
            (&body["code"], &body["message"]),
            (&"AccessDenied".into(), &why.into())
        );
    }
    // The service role sees it all, and its batch delete deletes.
    let service = Some(server.service_role_key.as_str());
    let (status, body) = send(Method::DELETE, &format!("object/{BUCKET}"), service, batch).await;
    assert_eq!((status, body.as_array().map(Vec::len)), (200, Some(1)));
    assert_eq!(server.object_count(BUCKET), 0);
}

/// The store refuses such keys at start-up; a service key that loses its
/// privilege later is what the store meets instead.
#[tokio::test]
async fn a_demoted_service_key_sees_no_bucket_may_not_delete_and_changes_nothing() {
    for secret_key in [false, true] {
        let server = server().await;
        server.seed(BUCKET, "k", b"kept");
        let store = store(&if secret_key {
            server.config_with(&server.secret_key, None)
        } else {
            server.config()
        });
        store.ping(BUCKET).await.unwrap();
        server.demote_service_key();
        server.clear_requests();
        // Only the bucket route tells a hidden bucket from a missing object.
        let err = store.ping(BUCKET).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BucketNotFound, "{err}");
        assert!(!err.is_retryable());
        for err in [
            store.get(&at("k")).await.unwrap_err(),
            store.head(&at("k")).await.unwrap_err(),
        ] {
            assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        }
        let err = store.delete(&at("k")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
        let err = store
            .put(&at("new"), Bytes::from_static(b"x"), &PutOptions::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
        // The batch answer says nothing was deleted, and a single DELETE
        // tells why (a HEAD would have said "not found").
        let err = store.delete_many(&[at("k")]).await.remove(0).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
        assert!(err.to_string().contains(&format!("{BUCKET}/k")), "{err}");
        assert_eq!(server.requests().len(), 7, "none of these is retried");
        assert_eq!(server.object(BUCKET, "k").as_deref(), Some(&b"kept"[..]));
        assert_eq!(server.object_count(BUCKET), 1);
    }
}

#[tokio::test]
async fn every_request_carries_apikey_and_bearer() {
    let server = server().await;
    let service_role = server.service_role_key.clone();
    let secret = server.secret_key.clone();
    let publishable = server.publishable_key.clone();
    let cases = [
        // apikey: the publishable key; bearer: the service_role key.
        (server.config(), &publishable, &service_role),
        // No publishable key: apikey falls back to the secret key.
        (
            server.config_with(&service_role, None),
            &service_role,
            &service_role,
        ),
        // An sb_secret_ bearer must equal apikey, publishable key or not.
        (
            server.config_with(&secret, Some(&publishable)),
            &secret,
            &secret,
        ),
        (server.config_with(&secret, None), &secret, &secret),
    ];
    let location = at("headers/k");
    for (config, apikey, bearer) in cases {
        server.clear_requests();
        let store = store(&config);
        store.ping(BUCKET).await.unwrap();
        store
            .put(&location, Bytes::from_static(b"x"), &PutOptions::default())
            .await
            .unwrap();
        store.get(&location).await.unwrap();
        store.head(&location).await.unwrap();
        store.delete(&location).await.unwrap();
        store
            .put(&location, Bytes::from_static(b"x"), &PutOptions::default())
            .await
            .unwrap();
        let deleted = store.delete_many(std::slice::from_ref(&location)).await;
        assert!(deleted[0].is_ok(), "{deleted:?}");
        let requests = server.requests();
        assert_eq!(requests.len(), 7);
        for r in requests {
            assert!(
                r.status.is_success(),
                "{} {}: {}",
                r.method,
                r.path,
                r.status
            );
            assert_eq!(r.header("apikey"), Some(apikey.as_str()), "{}", r.path);
            assert_eq!(
                r.header("authorization"),
                Some(format!("Bearer {bearer}").as_str()),
                "{}",
                r.path
            );
        }
    }
}

#[tokio::test]
async fn reads_use_the_routes_that_refuse_a_bad_token() {
    let server = server().await;
    server.seed(BUCKET, "k", b"x");
    let store = store(&server.config());
    server.clear_requests();
    store.get(&at("k")).await.unwrap();
    store.head(&at("k")).await.unwrap();
    let paths: Vec<_> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            "/storage/v1/object/authenticated/task-html/k",
            "/storage/v1/object/info/authenticated/task-html/k",
        ]
    );
}

#[tokio::test]
async fn uploads_upsert_and_carry_type_and_metadata_as_supabase_reads_them() {
    let server = server().await;
    let store = store(&server.config());
    let location = at("up/page.html.gz");
    let options = PutOptions {
        content_type: Some("text/html; charset=utf-8".into()),
        content_encoding: Some("gzip".into()),
        metadata: BTreeMap::from([
            (meta::TASK_ID.into(), "t-ü".into()),
            (meta::SHA256.into(), "ab".repeat(32)),
        ]),
    };
    server.clear_requests();
    for body in [&b"first"[..], &b"second"[..]] {
        store
            .put(&location, Bytes::copy_from_slice(body), &options)
            .await
            .unwrap();
    }
    assert_eq!(
        server.object(BUCKET, "up/page.html.gz").as_deref(),
        Some(&b"second"[..])
    );
    for r in server.requests() {
        assert_eq!((r.method.clone(), r.status.as_u16()), (Method::POST, 200));
        assert_eq!(r.header("x-upsert"), Some("true"));
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        let metadata = base64::engine::general_purpose::STANDARD
            .decode(r.header("x-metadata").expect("x-metadata"))
            .unwrap();
        let metadata: BTreeMap<String, String> = serde_json::from_slice(&metadata).unwrap();
        assert_eq!(metadata, options.metadata);
        // Supabase has no field for it; sending it could get the body decoded.
        assert_eq!(r.header("content-encoding"), None);
    }
    // The server refuses a plain upload over an existing object, so the
    // overwrite above (and in the conformance suite) proves `x-upsert`.
    let plain = reqwest::Client::new()
        .post(format!(
            "{}/storage/v1/object/{BUCKET}/up/page.html.gz",
            server.url
        ))
        .header("apikey", &server.publishable_key)
        .header(
            "authorization",
            format!("Bearer {}", server.service_role_key),
        )
        .body("third")
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 400);
    let body: serde_json::Value = serde_json::from_slice(&plain.bytes().await.unwrap()).unwrap();
    assert_eq!(body["error"], "Duplicate");
    assert_eq!(body["statusCode"], "409");
}

#[tokio::test]
async fn keys_with_spaces_and_symbols_round_trip_and_refused_ones_are_invalid_input() {
    let server = server().await;
    let store = store(&server.config());
    let odd = "odd keys/a b+c&d=e;f:g,h?i(j)'k!l*m$n@o.gz";
    let location = at(odd);
    store
        .put(
            &location,
            Bytes::from_static(b"odd"),
            &PutOptions::default(),
        )
        .await
        .unwrap();
    // Stored under exactly that name: nothing cut off as a query, nothing
    // encoded twice, `+` not read as a space.
    assert_eq!(server.object(BUCKET, odd).as_deref(), Some(&b"odd"[..]));
    assert_eq!(store.get(&location).await.unwrap(), &b"odd"[..]);
    assert_eq!(store.head(&location).await.unwrap().size, 3);
    store.delete(&location).await.unwrap();
    assert_eq!(server.object_count(BUCKET), 0);

    // Storage allows fewer characters than an ObjectKey does.
    server.clear_requests();
    let err = store
        .put(
            &at("hash#tag%20"),
            Bytes::from_static(b"x"),
            &PutOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(server.requests().len(), 1, "a refused key is not retried");
}

#[tokio::test]
async fn throttling_and_outages_are_retried_until_they_pass() {
    let server = server().await;
    let store = store(&server.config());
    let location = at("retry/k");
    for (fault, times) in [
        (Fault::RateLimited, 2),
        (Fault::Unavailable, 3),
        (Fault::WrappedUnavailable, 2),
        (Fault::DatabaseTimeout, 2),
    ] {
        server.clear_requests();
        server.inject(fault, times);
        store
            .put(
                &location,
                Bytes::from_static(b"body"),
                &PutOptions::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("put through {fault:?}: {e}"));
        server.inject(fault, times);
        assert_eq!(store.get(&location).await.unwrap(), &b"body"[..]);
        server.inject(fault, times);
        assert_eq!(store.head(&location).await.unwrap().size, 4);
        server.inject(fault, times);
        store.delete(&location).await.unwrap();
        assert_eq!(server.requests().len(), 4 * (times + 1), "{fault:?}");
        assert_eq!(server.object_count(BUCKET), 0);
    }
}

#[tokio::test]
async fn retries_run_out_as_a_transient_error() {
    let server = server().await;
    server.seed(BUCKET, "k", b"x");
    let store = SupabaseStore::new(&server.config()).unwrap().with_retries(
        2,
        Duration::from_millis(1),
        Duration::from_millis(1),
    );
    for fault in [
        Fault::RateLimited,
        Fault::Unavailable,
        Fault::WrappedUnavailable,
        Fault::DatabaseTimeout,
    ] {
        server.clear_requests();
        server.inject(fault, 3);
        let err = store.get(&at("k")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Transient, "{fault:?}: {err}");
        assert!(err.is_retryable());
        assert_eq!(server.requests().len(), 3, "{fault:?}");
        if let Fault::DatabaseTimeout = fault {
            assert!(server.requests().iter().all(|r| r.status == 544));
        }
        // The next sweep may succeed: the object is still there.
        assert_eq!(store.get(&at("k")).await.unwrap(), &b"x"[..]);
    }
}

#[tokio::test]
async fn a_permanent_bad_request_is_not_retried() {
    let server = server().await;
    let store = store(&server.config());
    server.inject(Fault::BadRequest, 1);
    let err = store
        .put(&at("k"), Bytes::from_static(b"x"), &PutOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(server.requests().len(), 1);
    assert_eq!(server.object(BUCKET, "k"), None);
}

#[tokio::test]
async fn a_stalled_request_times_out_and_is_retried() {
    let server = server().await;
    server.seed(BUCKET, "k", b"x");
    let stall = Duration::from_millis(1500);
    let limit = Duration::from_millis(200);

    server.inject(Fault::Stall(stall), 1);
    let once = store(&server.config())
        .with_retries(0, Duration::ZERO, Duration::ZERO)
        .with_request_timeout(limit);
    let started = Instant::now();
    let err = once.get(&at("k")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
    assert!(started.elapsed() < stall, "{:?}", started.elapsed());

    server.inject(Fault::Stall(stall), 1);
    let patient = store(&server.config()).with_request_timeout(limit);
    let started = Instant::now();
    assert_eq!(patient.get(&at("k")).await.unwrap(), &b"x"[..]);
    assert!(started.elapsed() < stall, "{:?}", started.elapsed());
}

#[tokio::test]
async fn batch_delete_takes_many_keys_in_capped_requests_and_settles_missing_ones() {
    let server = server().await;
    let total = 2 * MAX_DELETE_BATCH + 345;
    let mut locations = Vec::new();
    for i in 0..total {
        let key = format!("batch/{i:05}.html.gz");
        server.seed(BUCKET, &key, b"x");
        locations.push(at(&key));
    }
    server.seed(BUCKET, "batch/not-listed", b"kept");
    locations.extend((0..10).map(|i| at(&format!("batch/missing-{i}"))));
    let store = store(&server.config());

    server.clear_requests();
    let results = store.delete_many(&locations).await;
    assert_eq!(results.len(), locations.len());
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(server.object_count(BUCKET), 1);
    assert!(server.object(BUCKET, "batch/not-listed").is_some());
    let requests = server.requests();
    // The server refuses more than 1000 names a request; each name its
    // answer leaves out gets one DELETE of its own, which finds it gone.
    let batches: Vec<_> = requests
        .iter()
        .filter(|r| r.path == "/storage/v1/object/task-html")
        .collect();
    assert_eq!(batches.len(), 3, "{requests:#?}");
    for r in batches {
        assert_eq!((&r.method, r.status.as_u16()), (&Method::DELETE, 200));
    }
    let singles: Vec<_> = requests
        .iter()
        .filter(|r| {
            r.path
                .starts_with("/storage/v1/object/task-html/batch/missing-")
        })
        .collect();
    assert_eq!(singles.len(), 10, "{requests:#?}");
    assert_eq!(requests.len(), 13, "{requests:#?}");

    // Nothing left to delete, or no bucket at all: not an error.
    let mut elsewhere = locations[..5].to_vec();
    for at in &mut elsewhere {
        at.bucket = "no-such-bucket".into();
    }
    for again in [&locations[..5], &elsewhere[..]] {
        assert!(store.delete_many(again).await.iter().all(Result::is_ok));
    }
    server.clear_requests();
    assert!(store.delete_many(&[]).await.is_empty());
    assert!(server.requests().is_empty());
}

/// A key that Row Level Security keeps from being deleted fails alone;
/// the rest of its batch is deleted.
#[tokio::test]
async fn a_key_refused_by_row_level_security_fails_alone() {
    let server = server().await;
    let locations: Vec<Location> = (0..5).map(|i| at(&format!("rls/{i}"))).collect();
    for at in &locations {
        server.seed(&at.bucket, at.key.as_str(), b"x");
    }
    server.keep_from_delete(BUCKET, "rls/2");
    let store = store(&server.config());
    server.clear_requests();
    let results = store.delete_many(&locations).await;
    assert_eq!(results.len(), locations.len());
    for (i, result) in results.iter().enumerate() {
        if i == 2 {
            let err = result.as_ref().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
            assert!(err.to_string().contains("task-html/rls/2"), "{err}");
        } else {
            assert!(result.is_ok(), "{}: {result:?}", locations[i]);
        }
    }
    assert_eq!(server.object(BUCKET, "rls/2").as_deref(), Some(&b"x"[..]));
    assert_eq!(server.object_count(BUCKET), 1);
    // One batch, then one DELETE for the key its answer left out.
    let requests: Vec<_> = server
        .requests()
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    assert_eq!(
        requests,
        [
            (Method::DELETE, "/storage/v1/object/task-html".to_owned()),
            (
                Method::DELETE,
                "/storage/v1/object/task-html/rls/2".to_owned()
            ),
        ]
    );
}

/// A batch request that fails for good fails every key in it, and deletes nothing.
#[tokio::test]
async fn a_failed_batch_fails_each_of_its_keys() {
    let server = server().await;
    let locations: Vec<Location> = (0..3).map(|i| at(&format!("failed/{i}"))).collect();
    for at in &locations {
        server.seed(&at.bucket, at.key.as_str(), b"x");
    }
    let store = store(&server.config());
    server.inject(Fault::BadRequest, 1);
    let results = store.delete_many(&locations).await;
    assert_eq!(results.len(), 3);
    for (at, result) in locations.iter().zip(&results) {
        let err = result.as_ref().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{at}: {err}");
        assert!(err.to_string().contains(&at.to_string()), "{err}");
    }
    assert_eq!(server.object_count(BUCKET), 3);
}

#[tokio::test]
async fn debug_shows_no_key() {
    let server = server().await;
    let config = server.config();
    let store = SupabaseStore::new(&config).unwrap();
    store.ping(BUCKET).await.unwrap();
    let shown = format!("{store:?} {store:#?} {config:?} {config:#?}");
    for key in [
        &server.service_role_key,
        &server.secret_key,
        &server.publishable_key,
    ] {
        assert!(!shown.contains(key.as_str()), "{shown}");
    }
    assert!(shown.contains(&server.url), "{shown}");
}

/// The settings a deployment would set, through the same parser as `run`.
fn hot_settings(server: &SupabaseServer, service_role_key: &str) -> HotConfig {
    let vars = BTreeMap::from([
        ("HOT_STORE", "supabase".to_owned()),
        ("SUPABASE_URL", server.url.clone()),
        ("SUPABASE_SERVICE_ROLE_KEY", service_role_key.to_owned()),
        ("SUPABASE_PUBLISHABLE_KEY", server.publishable_key.clone()),
    ]);
    HotConfig::from_lookup(|name| vars.get(name).cloned()).unwrap()
}

/// Catalog rows (SQLite) for `tasks` of job `old` (to move) and `new` (kept
/// hot with retention 1), each blob stored in Supabase.
async fn seeded(rig: &Rig, hot: &dyn Store, tasks: &[(&str, &str)]) -> Vec<Bytes> {
    rig.old_and_new_jobs().await;
    let mut blobs = Vec::new();
    for (job, task) in tasks {
        let html = format!("<html><body>{task} of {job}</body></html>").repeat(40);
        let stored = gzip(html.as_bytes());
        rig.insert_task(job, task, &stored, Some(sha256_hex(html.as_bytes())))
            .await;
        let options = PutOptions {
            content_type: Some("text/html; charset=utf-8".into()),
            ..PutOptions::default()
        };
        hot.put(&hot_location(job, task), stored.clone(), &options)
            .await
            .unwrap();
        blobs.push(stored);
    }
    blobs
}

#[tokio::test]
async fn archiver_moves_blobs_out_of_supabase_end_to_end() {
    let server = SupabaseServer::start().await;
    server.create_bucket(HOT_BUCKET);
    let hot: Arc<dyn Store> = hot_store(&hot_settings(&server, &server.service_role_key)).unwrap();
    assert_eq!(hot.provider(), "supabase");
    hot.ping(HOT_BUCKET).await.unwrap();
    let rig = Rig::new(Backend::SqliteFs).await;
    let tasks = [("old", "a"), ("old", "b"), ("new", "c")];
    let blobs = seeded(&rig, hot.as_ref(), &tasks).await;

    // The sweep's first request to Supabase is throttled.
    server.inject(Fault::RateLimited, 1);
    let archiver = rig.archiver_with(hot.clone(), rig.cold.clone(), rig.config(1));
    let report = archiver.sweep().await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.archived, 2, "{report:?}");

    for ((job, task), stored) in tasks.iter().zip(&blobs) {
        let row = rig.row(task).await;
        let key = task_html_object_path(job, task);
        if *job == "old" {
            assert_eq!(row.state(), BlobState::Archived, "{task}");
            assert_eq!(
                &rig.cold.get(&cold_location(job, task)).await.unwrap(),
                stored
            );
            assert_eq!(
                server.object(HOT_BUCKET, &key),
                None,
                "{task}: hot copy left"
            );
        } else {
            assert_eq!(row.state(), BlobState::Hot, "{task}");
            assert_eq!(server.object(HOT_BUCKET, &key).as_ref(), Some(stored));
        }
    }
    let again = archiver.sweep().await;
    assert!(again.is_clean() && again.archived == 0, "{again:?}");
}

#[tokio::test]
async fn a_refused_key_or_wrong_url_never_marks_a_blob_lost() {
    let server = SupabaseServer::start().await;
    server.create_bucket(HOT_BUCKET);
    let good: Arc<dyn Store> = hot_store(&hot_settings(&server, &server.service_role_key)).unwrap();
    let wrong_key = hot_store(&hot_settings(
        &server,
        &format!("{}x", server.service_role_key),
    ))
    .unwrap();
    let mut wrong_url_config = server.config();
    wrong_url_config.url = format!("{}/elsewhere", server.url);
    let wrong_url: Arc<dyn Store> = Arc::new(store(&wrong_url_config));
    for hot in [wrong_key, wrong_url] {
        let rig = Rig::new(Backend::SqliteFs).await;
        let blobs = seeded(&rig, good.as_ref(), &[("old", "a")]).await;
        let report = rig
            .archiver_with(hot, rig.cold.clone(), rig.config(1))
            .sweep()
            .await;
        // The hot store cannot prove it sees the bucket: the sweep stops
        // before touching a blob.
        assert!(report.stopped, "{report:?}");
        assert_eq!(
            (report.lost, report.missing, report.failed),
            (0, 0, 0),
            "{report:?}"
        );
        assert_eq!(rig.row("a").await.state(), BlobState::Hot);
        assert_eq!(
            server.object(HOT_BUCKET, &task_html_object_path("old", "a")),
            Some(blobs[0].clone())
        );
    }

    // What does prove a blob missing: Supabase's own not-found (the 400 quirk).
    let rig = Rig::new(Backend::SqliteFs).await;
    seeded(&rig, good.as_ref(), &[("old", "a")]).await;
    rig.insert_task("old", "ghost", b"never stored", None).await;
    let report = rig
        .archiver_with(good.clone(), rig.cold.clone(), rig.config(1))
        .sweep()
        .await;
    assert_eq!((report.missing, report.archived), (1, 1), "{report:?}");
    assert_eq!(rig.row("ghost").await.state(), BlobState::Missing);
}
