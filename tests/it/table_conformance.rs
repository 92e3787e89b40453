//! The `ArchiveSource` contract proven for declared sources (`TableSource`)
//! over the uploads schema, on Postgres and SQLite: claims and leases,
//! fenced writes, the no-dangling-pointer order, key and time types, a
//! parent scope with its marker, and identifiers that try to escape. The
//! built-in's own suite is `catalog_conformance` and `leases`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use coldsweep::catalog::{Fence, Lease};
use coldsweep::source::ArchivedAt;
use coldsweep::source::TableSource;
use coldsweep::source::spec::{SpecProblemKind, parse_sources};
use coldsweep::{
    ArchiveCandidate, ArchiveSource, Archiver, Config, ErrorKind, KeyPrefix, Location, ObjectKey,
    Store,
};
use md5::Digest as _;
use sha2::Sha256;

use crate::faults::{Fault, FaultyStore};
use crate::table_source::{COLD, MORE_DOCUMENTS, Scene, now};
use crate::uploads_schema::DECLARATIONS;

/// The documents source with `rule` as its `[sources.rule]` body.
fn documents(rule: &str) -> String {
    format!(
        r#"[[sources]]
name = "documents"
table = "documents"
key = "id"
cold_key = "uploads/{{org_id}}/{{id}}/{{filename}}"
side_table = "coldsweep_documents"

[sources.hot]
bucket_column = "bucket"
path_column = "path"

[sources.columns]
stored_size = "size"
digest = "digest"
digest_algorithm = "sha256"
digest_of = "stored"

[sources.cold]
provider_column = "archive_provider"
bucket_column = "archive_bucket"
key_column = "archive_key"
archived_at_column = "archived_at"

[sources.rule]
{rule}
"#
    )
}

/// Every document older than a day moves.
fn all_documents() -> String {
    documents("min_age = \"1d\"\nage_column = \"created_at\"")
}

/// The post-images source of `DECLARATIONS`, alone.
fn post_images() -> String {
    let at = DECLARATIONS.rfind("[[sources]]").unwrap();
    DECLARATIONS[at..].to_owned()
}

const ORG_A: &str = "0a0a0a0a-0a0a-4a0a-8a0a-0a0a0a0a0a0a";
const ORG_B: &str = "0b0b0b0b-0b0b-4b0b-8b0b-0b0b0b0b0b0b";

fn lease(owner: &str, free_before: DateTime<Utc>, until: DateTime<Utc>) -> Lease {
    Lease {
        owner: owner.to_owned(),
        free_before,
        until,
    }
}

fn fence(owner: &str, now: DateTime<Utc>) -> Fence<'_> {
    Fence { owner, now }
}

fn t0() -> DateTime<Utc> {
    now() - Duration::hours(6)
}

fn keys(candidates: &[ArchiveCandidate]) -> Vec<String> {
    candidates.iter().map(|c| c.task_id.clone()).collect()
}

fn key_set(candidates: &[ArchiveCandidate]) -> BTreeSet<String> {
    candidates.iter().map(|c| c.task_id.clone()).collect()
}

/// One source, opened on its own (a worker of its own).
async fn open(scene: &Scene, declarations: &str) -> TableSource {
    scene.sources(declarations).await.remove(0)
}

/// Every column of each row `sql` selects, as text (the statement casts).
async fn texts(scene: &Scene, sql: &str) -> Vec<Vec<Option<String>>> {
    use sqlx::Row;
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    match (&scene.db.pg_pool, &scene.db.sqlite_pool) {
        (Some(pool), _) => sqlx::query(sql)
            .fetch_all(pool)
            .await
            .unwrap()
            .iter()
            .map(|r| (0..r.len()).map(|i| r.get(i)).collect())
            .collect(),
        (_, Some(pool)) => sqlx::query(sql)
            .fetch_all(pool)
            .await
            .unwrap()
            .iter()
            .map(|r| (0..r.len()).map(|i| r.get(i)).collect())
            .collect(),
        _ => unreachable!(),
    }
}

/// Old documents of organisation a, ids 7 and on (hot copies included).
async fn more_documents(scene: &Scene, n: usize) -> Vec<String> {
    for i in 0..n {
        let name = format!("bulk {i}.bin");
        let body = format!("bulk body {i}");
        let digest = hex::encode(Sha256::digest(body.as_bytes()));
        scene
            .exec(&format!(
                "INSERT INTO documents (org_id, filename, bucket, path, created_at, digest, size)
                 VALUES ('{ORG_A}', '{name}', 'uploads', 'org-a/{name}',
                         '2022-01-01T00:00:00Z', '{digest}', {})",
                body.len()
            ))
            .await;
        scene
            .put("uploads", &format!("org-a/{name}"), body.into_bytes())
            .await;
    }
    document_ids(scene, "1 = 1").await
}

/// Keys of documents matching `filter`, in key order.
async fn document_ids(scene: &Scene, filter: &str) -> Vec<String> {
    texts(
        scene,
        &format!("SELECT CAST(id AS TEXT) AS k FROM documents WHERE {filter} ORDER BY id"),
    )
    .await
    .into_iter()
    .map(|r| r[0].clone().unwrap())
    .collect()
}

/// Everything coldsweep and the application recorded of the documents.
async fn documents_state(scene: &Scene) -> Vec<Vec<Option<String>>> {
    let mut rows = texts(
        scene,
        "SELECT CAST(row_key AS TEXT) AS k, lease_owner, CAST(lease_expires_at AS TEXT), state,
                error, CAST(attempts AS TEXT), CAST(claims AS TEXT), cold_provider,
                cold_bucket, cold_key, CAST(archived_at AS TEXT), CAST(hot_deleted_at AS TEXT),
                CAST(missing_since AS TEXT)
         FROM coldsweep_documents ORDER BY row_key",
    )
    .await;
    rows.extend(
        texts(
            scene,
            "SELECT CAST(id AS TEXT) AS k, path, archive_provider, archive_bucket, archive_key,
                    CAST(archived_at AS TEXT)
             FROM documents ORDER BY id",
        )
        .await,
    );
    rows
}

/// A side row's `column`, as text.
async fn side(scene: &Scene, table: &str, column: &str, key: &str) -> Option<String> {
    let cast = if scene.db.pg_pool.is_some() {
        format!("CAST('{key}' AS {})", row_key_type(table))
    } else {
        format!("'{key}'")
    };
    texts(
        scene,
        &format!("SELECT CAST({column} AS TEXT) FROM {table} WHERE row_key = {cast}"),
    )
    .await
    .into_iter()
    .next()
    .and_then(|r| r[0].clone())
}

fn row_key_type(table: &str) -> &'static str {
    if table == "coldsweep_posts" {
        "uuid"
    } else {
        "bigint"
    }
}

async fn document(scene: &Scene, id: &str, column: &str) -> Option<String> {
    texts(
        scene,
        &format!("SELECT CAST({column} AS TEXT) FROM documents WHERE CAST(id AS TEXT) = '{id}'"),
    )
    .await
    .into_iter()
    .next()
    .and_then(|r| r[0].clone())
}

fn lost<T: std::fmt::Debug>(result: coldsweep::Result<T>, what: &str) {
    match result {
        Err(e) => assert_eq!(e.kind(), ErrorKind::LeaseLost, "{what}: {}", e.chain()),
        Ok(v) => panic!("{what}: a write without the lease succeeded: {v:?}"),
    }
}

/// Every fenced write of `candidate` under `fence`, each expected to find
/// the lease lost and change nothing.
async fn every_write_is_refused(
    scene: &Scene,
    source: &TableSource,
    candidate: &ArchiveCandidate,
    fence: Fence<'_>,
) {
    let before = documents_state(scene).await;
    let at = fence.now;
    lost(
        source
            .record_archived(candidate, fence, "fs", COLD, "stale/key")
            .await,
        "record_archived",
    );
    assert_eq!(
        source
            .record_archived_many(&[(candidate, "stale/key")], fence, "fs", COLD)
            .await
            .unwrap(),
        Vec::<String>::new(),
        "record_archived_many"
    );
    lost(source.clear_hot(candidate, fence).await, "clear_hot");
    assert_eq!(
        source.clear_hot_many(&[candidate], fence).await.unwrap(),
        Vec::<String>::new(),
        "clear_hot_many"
    );
    lost(
        source.mark_lost(candidate, fence, "stale").await,
        "mark_lost",
    );
    lost(
        source.mark_quarantined(candidate, fence, "stale").await,
        "mark_quarantined",
    );
    lost(
        source
            .mark_missing(candidate, fence, "stale", at, at + Duration::hours(1))
            .await,
        "mark_missing",
    );
    lost(
        source.clear_missing(candidate, fence).await,
        "clear_missing",
    );
    lost(
        source
            .release(candidate, fence, "stale", at + Duration::hours(1))
            .await,
        "release",
    );
    assert_eq!(
        source
            .extend_leases(
                std::slice::from_ref(&candidate.task_id),
                fence,
                at + Duration::hours(1)
            )
            .await
            .unwrap(),
        0,
        "extend_leases"
    );
    assert_eq!(
        documents_state(scene).await,
        before,
        "a write without the lease changed the catalog"
    );
}

// -- 1. claims ---------------------------------------------------------------

/// Only rows the rule moves are claimed, in the key's own order; a lease
/// hides them from other workers up to its end; an expired one frees them,
/// and `claims` counts up.
async fn claims_follow_the_rule_and_leases(postgres: bool) {
    let scene = Scene::new(postgres).await;
    let old = more_documents(&scene, 8).await;
    assert!(old.len() >= 14, "{old:?}");
    // A day old at most: held by min_age. keep.pdf is old but held by the condition.
    scene
        .exec(&format!(
            "INSERT INTO documents (org_id, filename, bucket, path, created_at)
             VALUES ('{ORG_A}', 'young.pdf', 'uploads', 'org-a/young.pdf', '2026-05-31T12:00:00Z')"
        ))
        .await;
    let declarations = documents(
        "min_age = \"1d\"\nage_column = \"created_at\"\ncondition = \"filename <> 'keep.pdf'\"",
    );
    let expected = document_ids(&scene, "filename NOT IN ('young.pdf', 'keep.pdf')").await;
    assert_eq!(expected.len(), old.len() - 1);

    let until = t0() + Duration::minutes(1);
    let a = open(&scene, &declarations).await;
    let claimed = a.claim(1000, &lease("a", t0(), until)).await.unwrap();
    assert!(claimed.unreadable.is_empty(), "{:?}", claimed.unreadable);
    // In the key's own order: 9 before 10 (as text, "10" < "9").
    assert_eq!(keys(&claimed.candidates), expected);
    assert!(claimed.candidates.iter().all(|c| c.claims == 1));
    assert_eq!(
        side(&scene, "coldsweep_documents", "lease_owner", &expected[0]).await,
        Some("a".to_owned())
    );

    // Another worker, during the lease and at its very end: nothing.
    for at in [t0(), t0() + Duration::seconds(30), until] {
        let b = open(&scene, &declarations).await;
        let none = b
            .claim(1000, &lease("b", at, at + Duration::minutes(1)))
            .await
            .unwrap();
        assert!(
            none.candidates.is_empty(),
            "at {at}: {:?}",
            keys(&none.candidates)
        );
    }

    // Once it has ended, every row again, claimed a second time.
    let after = until + Duration::seconds(1);
    let b = open(&scene, &declarations).await;
    let again = b
        .claim(1000, &lease("b", after, after + Duration::minutes(1)))
        .await
        .unwrap();
    assert_eq!(keys(&again.candidates), expected);
    assert!(
        again.candidates.iter().all(|c| c.claims == 2),
        "{:?}",
        again.candidates
    );
    assert_eq!(
        side(&scene, "coldsweep_documents", "claims", &expected[3])
            .await
            .as_deref(),
        Some("2")
    );
}

/// Two workers claiming at once, a few rows at a time, never get one row both.
async fn concurrent_claims_are_disjoint(postgres: bool) {
    let scene = Scene::new(postgres).await;
    let all = more_documents(&scene, 40).await;
    let declarations = all_documents();
    let x = open(&scene, &declarations).await;
    let y = open(&scene, &declarations).await;
    let claim_all = |source: TableSource, owner: &'static str| async move {
        let lease = lease(owner, t0(), t0() + Duration::minutes(5));
        let mut got = Vec::new();
        loop {
            let claim = source.claim(3, &lease).await.unwrap();
            if claim.candidates.is_empty() {
                return got;
            }
            got.extend(keys(&claim.candidates));
            tokio::task::yield_now().await;
        }
    };
    let (from_x, from_y) = tokio::join!(claim_all(x, "x"), claim_all(y, "y"));
    let xs: BTreeSet<String> = from_x.iter().cloned().collect();
    let ys: BTreeSet<String> = from_y.iter().cloned().collect();
    assert_eq!(xs.len(), from_x.len(), "x claimed a row twice");
    assert_eq!(ys.len(), from_y.len(), "y claimed a row twice");
    assert!(
        xs.is_disjoint(&ys),
        "both: {:?}",
        xs.intersection(&ys).collect::<Vec<_>>()
    );
    let union: BTreeSet<String> = xs.union(&ys).cloned().collect();
    assert_eq!(union, all.iter().cloned().collect::<BTreeSet<_>>());
    // The side table agrees: each row is held by the worker that got it.
    for key in &from_y {
        assert_eq!(
            side(&scene, "coldsweep_documents", "lease_owner", key)
                .await
                .as_deref(),
            Some("y")
        );
    }
}

/// Quarantined and lost rows are never claimed; a missing row is claimed
/// again after its recheck time, with the time it was first missed; a
/// released row after its retry time, with its attempts counted.
async fn states_and_back_offs_decide_claims(postgres: bool) {
    let scene = Scene::new(postgres).await;
    let declarations = all_documents();
    let source = open(&scene, &declarations).await;
    let start = t0();
    let claimed = source
        .claim(1000, &lease("a", start, start + Duration::seconds(30)))
        .await
        .unwrap()
        .candidates;
    assert_eq!(claimed.len(), 6, "{:?}", keys(&claimed));
    let f = fence("a", start);
    source
        .mark_quarantined(&claimed[0], f, "sha256 mismatch")
        .await
        .unwrap();
    source
        .mark_lost(&claimed[1], f, "in neither store")
        .await
        .unwrap();
    source
        .mark_missing(
            &claimed[2],
            f,
            "in neither store",
            start,
            start + Duration::hours(1),
        )
        .await
        .unwrap();
    source
        .release(
            &claimed[3],
            f,
            "upload failed: 503",
            start + Duration::minutes(10),
        )
        .await
        .unwrap();
    let id = |i: usize| claimed[i].task_id.clone();
    assert_eq!(
        side(&scene, "coldsweep_documents", "state", &id(0))
            .await
            .as_deref(),
        Some("quarantined")
    );
    assert_eq!(
        side(&scene, "coldsweep_documents", "error", &id(3))
            .await
            .as_deref(),
        Some("upload failed: 503")
    );
    assert_eq!(
        side(&scene, "coldsweep_documents", "attempts", &id(3))
            .await
            .as_deref(),
        Some("1")
    );
    // They keep their hot copies.
    for i in 0..4 {
        assert!(document(&scene, &id(i), "path").await.is_some());
    }

    let claim_at = |at: DateTime<Utc>| {
        let declarations = declarations.clone();
        let scene = &scene;
        async move {
            let source = open(scene, &declarations).await;
            let owner = format!("w{}", at.timestamp());
            let claim = source
                .claim(1000, &lease(&owner, at, at + Duration::seconds(1)))
                .await
                .unwrap();
            source.hand_back(&claim.candidates, &owner).await.unwrap();
            claim.candidates
        }
    };
    let rest: BTreeSet<String> = (4..6).map(id).collect();
    let early = claim_at(start + Duration::minutes(1)).await;
    assert_eq!(key_set(&early), rest);

    let retried = claim_at(start + Duration::minutes(11)).await;
    let mut expected = rest.clone();
    expected.insert(id(3));
    assert_eq!(key_set(&retried), expected);
    let released = retried.iter().find(|c| c.task_id == id(3)).unwrap();
    assert_eq!(released.attempts, 1);

    let rechecked = claim_at(start + Duration::hours(2)).await;
    expected.insert(id(2));
    assert_eq!(
        key_set(&rechecked),
        expected,
        "quarantined and lost stay out"
    );
    let missing = rechecked.iter().find(|c| c.task_id == id(2)).unwrap();
    assert_eq!(missing.missing_since, Some(start));

    // A second release counts a second attempt.
    let source = open(&scene, &declarations).await;
    let at = start + Duration::hours(3);
    let claim = source
        .claim(1000, &lease("c", at, at + Duration::minutes(1)))
        .await
        .unwrap();
    let third = claim
        .candidates
        .iter()
        .find(|c| c.task_id == id(3))
        .unwrap();
    source
        .release(third, fence("c", at), "again", at + Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(
        side(&scene, "coldsweep_documents", "attempts", &id(3))
            .await
            .as_deref(),
        Some("2")
    );
}

// -- 2. fences ---------------------------------------------------------------

/// A worker whose lease expired, or was taken over by another worker,
/// changes nothing, for a fresh row and one it already switched to cold;
/// `hand_back` gives back only the caller's own rows.
async fn lost_leases_change_nothing(postgres: bool) {
    let scene = Scene::new(postgres).await;
    let declarations = all_documents();
    let a = open(&scene, &declarations).await;
    let start = t0();
    let until = start + Duration::minutes(1);
    let mine = a
        .claim(1000, &lease("a", start, until))
        .await
        .unwrap()
        .candidates;
    let (switched, fresh) = (&mine[0], &mine[1]);
    a.record_archived(switched, fence("a", start), "fs", COLD, "uploads/switched")
        .await
        .unwrap();

    // Expired: the lease ended before the worker's now.
    let late = until + Duration::seconds(1);
    for candidate in [switched, fresh] {
        every_write_is_refused(&scene, &a, candidate, fence("a", late)).await;
    }
    assert!(document(&scene, &switched.task_id, "path").await.is_some());

    // Taken over: another worker holds it now; a's clock still reads a
    // time inside its old lease.
    let b = open(&scene, &declarations).await;
    let theirs = b
        .claim(1000, &lease("b", late, late + Duration::minutes(1)))
        .await
        .unwrap()
        .candidates;
    assert_eq!(key_set(&theirs), key_set(&mine));
    for candidate in [switched, fresh] {
        every_write_is_refused(
            &scene,
            &a,
            candidate,
            fence("a", start + Duration::seconds(30)),
        )
        .await;
    }

    assert_eq!(a.hand_back(&mine, "a").await.unwrap(), 0);
    assert_eq!(b.hand_back(&theirs[..2], "b").await.unwrap(), 2);
    assert_eq!(
        side(
            &scene,
            "coldsweep_documents",
            "lease_owner",
            &theirs[0].task_id
        )
        .await,
        None
    );
    assert_eq!(
        side(
            &scene,
            "coldsweep_documents",
            "lease_owner",
            &theirs[2].task_id
        )
        .await
        .as_deref(),
        Some("b")
    );
    // The live holder's writes do land.
    let f = fence("b", late);
    assert_eq!(
        b.extend_leases(&keys(&theirs[2..]), f, late + Duration::minutes(5))
            .await
            .unwrap(),
        theirs.len() as u64 - 2
    );
    b.record_archived(&theirs[2], f, "fs", COLD, "uploads/by-b")
        .await
        .unwrap();
    assert_eq!(
        document(&scene, &theirs[2].task_id, "archive_key")
            .await
            .as_deref(),
        Some("uploads/by-b")
    );
}

// -- 3. no dangling pointer --------------------------------------------------

/// `clear_hot` refuses a row with no cold location; a row switched to cold
/// by a worker that died before the hot delete is claimed again with its
/// cold location and finished by the next sweep.
async fn a_switch_without_delete_is_finished(postgres: bool) {
    let scene = Scene::new(postgres).await;
    let declarations = all_documents();
    let dead = open(&scene, &declarations).await;
    let start = t0();
    let claimed = dead
        .claim(1000, &lease("dead", start, start + Duration::minutes(1)))
        .await
        .unwrap()
        .candidates;
    let f = fence("dead", start);
    let err = dead.clear_hot(&claimed[1], f).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{}", err.chain());
    assert!(
        document(&scene, &claimed[1].task_id, "path")
            .await
            .is_some()
    );
    assert_eq!(
        side(
            &scene,
            "coldsweep_documents",
            "hot_deleted_at",
            &claimed[1].task_id
        )
        .await,
        None
    );

    // The cold copy is written and recorded; then the worker dies.
    let row = &claimed[0];
    let key = dead.cold_key(row, &KeyPrefix::none()).unwrap();
    let hot = Location::new(
        &row.storage_bucket,
        ObjectKey::new(&row.storage_path).unwrap(),
    );
    let bytes = scene.hot.get(&hot).await.unwrap();
    scene
        .cold
        .put(
            &Location::new(COLD, key.clone()),
            bytes.clone(),
            &Default::default(),
        )
        .await
        .unwrap();
    let provider = scene.cold.provider().to_owned();
    dead.record_archived(row, f, &provider, COLD, key.as_str())
        .await
        .unwrap();

    let peek_at = start + Duration::minutes(2);
    let peek = open(&scene, &declarations).await;
    let again = peek
        .claim(
            1000,
            &lease("peek", peek_at, peek_at + Duration::minutes(1)),
        )
        .await
        .unwrap()
        .candidates;
    let resumed = again.iter().find(|c| c.task_id == row.task_id).unwrap();
    assert_eq!(
        resumed.archived_at,
        Some(ArchivedAt {
            provider: provider.clone(),
            bucket: COLD.to_owned(),
            key: key.as_str().to_owned(),
        })
    );
    assert_eq!(resumed.claims, 2);
    peek.hand_back(&again, "peek").await.unwrap();

    let sources = scene.sources(&declarations).await;
    let report = scene.archiver(&sources).sweep().await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.archived, 6, "{report:?}");
    assert!(
        !scene
            .hot_exists(&row.storage_bucket, &row.storage_path)
            .await
    );
    assert_eq!(scene.cold_bytes(key.as_str()).await, Some(bytes));
    assert_eq!(document(&scene, &row.task_id, "path").await, None);
    assert_eq!(
        document(&scene, &row.task_id, "archive_key")
            .await
            .as_deref(),
        Some(key.as_str())
    );
}

/// A source that keeps the path (posts: side table only) never claims a
/// row again once its hot copy is recorded gone.
async fn a_kept_path_is_not_claimed_again(postgres: bool) {
    let scene = Scene::new(postgres).await;
    let declarations = post_images().replace("hot_quota = \"1GB\"", "hot_quota = \"1000\"");
    let sources = scene.sources(&declarations).await;
    let report = scene.archiver(&sources).sweep().await;
    assert_eq!(report.archived, 1, "{report:?}");
    let key = "1c1c1c1c-1c1c-4c1c-8c1c-1c1c1c1c1c1c";
    if postgres {
        // Keyed in the key's own type, so every fenced write above bound a uuid.
        let types = texts(
            &scene,
            "SELECT CAST(data_type AS TEXT) FROM information_schema.columns
             WHERE table_name = 'coldsweep_posts' AND column_name = 'row_key'",
        )
        .await;
        assert_eq!(types, [[Some("uuid".to_owned())]]);
    }
    assert!(
        side(&scene, "coldsweep_posts", "hot_deleted_at", key)
            .await
            .is_some()
    );
    let later = now() + Duration::days(30);
    let source = open(&scene, &declarations).await;
    let claim = source
        .claim(1000, &lease("later", later, later + Duration::minutes(1)))
        .await
        .unwrap();
    assert!(claim.candidates.is_empty(), "{:?}", claim.candidates);
    assert_eq!(
        texts(
            &scene,
            "SELECT image_path FROM posts WHERE image_path IS NOT NULL"
        )
        .await
        .len(),
        1,
        "the application's path stays"
    );
}

fn archiver_at(
    scene: &Scene,
    hot: Arc<dyn Store>,
    sources: &[TableSource],
    at: DateTime<Utc>,
) -> Archiver {
    let mut config = Config::default();
    config.provider = scene.provider;
    config.bucket = COLD.to_owned();
    config.batch_size = 2;
    config.concurrency = 2;
    config.blob_timeout = StdDuration::from_secs(10);
    Archiver::declared(config, sources.to_vec(), hot, scene.cold.clone())
        .with_clock(Arc::new(move || at))
}

/// A hot delete that fails leaves the row switched to cold with its hot
/// copy; the next sweep finishes it and nothing is lost.
async fn a_failed_hot_delete_is_finished_next_sweep(postgres: bool) {
    let scene = Scene::new(postgres).await;
    let declarations = all_documents();
    let sources = scene.sources(&declarations).await;
    let (hot, faults) = FaultyStore::wrap(scene.hot.clone());
    let name = MORE_DOCUMENTS[0].0;
    let path = format!("org-a/{name}");
    let at = Location::new("uploads", ObjectKey::new(&path).unwrap());
    faults.fail_delete_of(&at, Some(Fault::Denied));
    let id = document_ids(&scene, &format!("filename = '{name}'"))
        .await
        .remove(0);

    let first = archiver_at(&scene, hot.clone(), &sources, now())
        .sweep()
        .await;
    assert_eq!((first.archived, first.failed), (5, 1), "{first:?}");
    let key = document(&scene, &id, "archive_key")
        .await
        .expect("switched to cold");
    assert_eq!(document(&scene, &id, "path").await, Some(path.clone()));
    assert!(scene.hot_exists("uploads", &path).await);
    assert_eq!(
        scene.cold_bytes(&key).await.as_deref(),
        Some(MORE_DOCUMENTS[0].2.as_bytes())
    );
    assert_eq!(
        side(&scene, "coldsweep_documents", "hot_deleted_at", &id).await,
        None
    );

    faults.fail_delete_of(&at, None);
    let second = archiver_at(&scene, hot, &sources, now() + Duration::days(1))
        .sweep()
        .await;
    assert!(second.is_clean(), "{second:?}");
    assert_eq!(second.archived, 1, "{second:?}");
    assert!(!scene.hot_exists("uploads", &path).await);
    assert_eq!(document(&scene, &id, "path").await, None);
    assert_eq!(
        document(&scene, &id, "archive_key").await,
        Some(key.clone())
    );
    assert_eq!(
        scene.cold_bytes(&key).await.as_deref(),
        Some(MORE_DOCUMENTS[0].2.as_bytes())
    );
    assert!(
        side(&scene, "coldsweep_documents", "hot_deleted_at", &id)
            .await
            .is_some()
    );
}

// -- 4. types ----------------------------------------------------------------

/// Time texts of several formats and offsets, and Unix seconds (SQLite),
/// decide `min_age` as instants: 90 days before `now` is 2026-03-03T00:00Z.
async fn times_decide_min_age_as_instants(postgres: bool) {
    let scene = Scene::new(postgres).await;
    scene.exec("DELETE FROM documents").await;
    let mut rows: Vec<(&str, String, bool)> = vec![
        ("offset-in", "'2026-03-03 01:59:00+02:00'".into(), true),
        ("offset-out", "'2026-03-03 02:01:00+02:00'".into(), false),
        ("west-out", "'2026-03-02 20:00:00-05:00'".into(), false),
        ("z-in", "'2026-03-02T23:59:00Z'".into(), true),
        ("z-out", "'2026-03-03T00:01:00Z'".into(), false),
        ("t-in", "'2026-03-02T23:59:00'".into(), true),
        ("space-out", "'2026-03-03 00:01:00'".into(), false),
        ("frac-in", "'2026-03-02T23:59:59.750Z'".into(), true),
        ("frac-out", "'2026-03-03T00:00:00.250Z'".into(), false),
    ];
    if !postgres {
        rows.push(("unix-in", "1772495940".into(), true));
        rows.push(("unix-out", "1772496060".into(), false));
    }
    for (name, created, _) in &rows {
        scene
            .exec(&format!(
                "INSERT INTO documents (org_id, filename, bucket, path, created_at)
                 VALUES ('{ORG_A}', '{name}', 'uploads', 'org-a/{name}', {created})"
            ))
            .await;
    }
    let declarations = documents("min_age = \"90d\"\nage_column = \"created_at\"");
    let source = open(&scene, &declarations).await;
    let claim = source
        .claim(1000, &lease("w", now(), now() + Duration::minutes(1)))
        .await
        .unwrap();
    let moved: BTreeSet<String> = claim
        .candidates
        .iter()
        .map(|c| c.storage_path.trim_start_matches("org-a/").to_owned())
        .collect();
    let expected: BTreeSet<String> = rows
        .iter()
        .filter(|r| r.2)
        .map(|r| r.0.to_owned())
        .collect();
    assert_eq!(moved, expected);
}

/// `keep_newest` per composite group keeps the newest N of each
/// (`org_id`, `bucket`), not of each organisation.
async fn a_composite_group_keeps_the_newest_of_each(postgres: bool) {
    let scene = Scene::new(postgres).await;
    for (org, bucket, name, created) in [
        (ORG_A, "uploads-eu", "eu-1", "2022-01-01T00:00:00Z"),
        (ORG_A, "uploads-eu", "eu-2", "2022-02-01T00:00:00Z"),
        (ORG_A, "uploads-eu", "eu-3", "2022-03-01T00:00:00Z"),
        (ORG_B, "uploads", "b-1", "2021-01-01T00:00:00Z"),
    ] {
        scene
            .exec(&format!(
                "INSERT INTO documents (org_id, filename, bucket, path, created_at)
                 VALUES ('{org}', '{name}', '{bucket}', 'x/{name}', '{created}')"
            ))
            .await;
    }
    let declarations = documents(
        "min_age = \"1d\"\nage_column = \"created_at\"\nkeep_newest = 2\ngroup_by = [\"org_id\", \"bucket\"]",
    );
    let source = open(&scene, &declarations).await;
    let claim = source
        .claim(1000, &lease("w", now(), now() + Duration::minutes(1)))
        .await
        .unwrap();
    let moved: BTreeSet<String> = claim
        .candidates
        .iter()
        .map(|c| c.storage_path.rsplit('/').next().unwrap().to_owned())
        .collect();
    let expected: BTreeSet<String> = [
        "old one.pdf",
        "keep.pdf",
        "Ünïcode 名前 🎉 a+b%.txt",
        "eu-1",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(moved, expected);
}

/// Rows with NULL digests and sizes move, checked against what the hot
/// store reports; a row whose bytes disagree with its size or its sha256
/// is quarantined and stays hot.
async fn digests_and_sizes_are_checked(postgres: bool) {
    let scene = Scene::new(postgres).await;
    for (name, body, digest, size) in [
        (
            "bad-digest",
            "some bytes",
            hex::encode(Sha256::digest(b"other bytes")),
            10,
        ),
        (
            "bad-size",
            "some bytes",
            hex::encode(Sha256::digest(b"some bytes")),
            11,
        ),
    ] {
        scene
            .exec(&format!(
                "INSERT INTO documents (org_id, filename, bucket, path, created_at, digest, size)
                 VALUES ('{ORG_A}', '{name}', 'uploads', 'org-a/{name}',
                         '2022-01-01T00:00:00Z', '{digest}', {size})"
            ))
            .await;
        scene
            .put(
                "uploads",
                &format!("org-a/{name}"),
                body.as_bytes().to_vec(),
            )
            .await;
    }
    let nulls = document_ids(&scene, "digest IS NULL OR size IS NULL").await;
    assert_eq!(nulls.len(), 2, "the fixture's rows without digest or size");
    let originals = texts(
        &scene,
        "SELECT CAST(id AS TEXT), bucket, path FROM documents",
    )
    .await;
    let mut bodies = Vec::new();
    for row in &originals {
        let (bucket, path) = (row[1].clone().unwrap(), row[2].clone().unwrap());
        let at = Location::new(&bucket, ObjectKey::new(&path).unwrap());
        bodies.push((
            row[0].clone().unwrap(),
            bucket,
            path,
            scene.hot.get(&at).await.unwrap(),
        ));
    }

    let sources = scene.sources(&all_documents()).await;
    let report = scene.archiver(&sources).sweep().await;
    assert_eq!((report.archived, report.quarantined), (6, 2), "{report:?}");
    for (id, bucket, path, body) in bodies {
        let name = path.trim_start_matches("org-a/");
        if name.starts_with("bad-") {
            assert!(scene.hot_exists(&bucket, &path).await, "{name}");
            assert_eq!(document(&scene, &id, "path").await, Some(path.clone()));
            assert_eq!(document(&scene, &id, "archive_key").await, None, "{name}");
            assert_eq!(
                side(&scene, "coldsweep_documents", "state", &id)
                    .await
                    .as_deref(),
                Some("quarantined"),
                "{name}"
            );
        } else {
            assert!(!scene.hot_exists(&bucket, &path).await, "{name}");
            let key = document(&scene, &id, "archive_key").await.unwrap();
            assert_eq!(scene.cold_bytes(&key).await, Some(body), "{name}");
        }
    }
}

/// An md5 digest column: a matching row moves, a mismatching one is quarantined.
async fn an_md5_digest_is_checked(postgres: bool) {
    let scene = Scene::new(postgres).await;
    scene.exec("DELETE FROM documents").await;
    for (name, body, digest_of) in [
        ("good", "good bytes", "good bytes"),
        ("bad", "bad bytes", "other"),
    ] {
        let digest = hex::encode(md5::Md5::digest(digest_of.as_bytes()));
        scene
            .exec(&format!(
                "INSERT INTO documents (org_id, filename, bucket, path, created_at, digest, size)
                 VALUES ('{ORG_A}', '{name}', 'uploads', 'org-a/{name}',
                         '2022-01-01T00:00:00Z', '{digest}', {})",
                body.len()
            ))
            .await;
        scene
            .put(
                "uploads",
                &format!("org-a/{name}"),
                body.as_bytes().to_vec(),
            )
            .await;
    }
    let declarations = all_documents().replace(
        "digest_algorithm = \"sha256\"",
        "digest_algorithm = \"md5\"",
    );
    let sources = scene.sources(&declarations).await;
    let report = scene.archiver(&sources).sweep().await;
    assert_eq!((report.archived, report.quarantined), (1, 1), "{report:?}");
    assert!(!scene.hot_exists("uploads", "org-a/good").await);
    assert!(scene.hot_exists("uploads", "org-a/bad").await);
    let good = document_ids(&scene, "filename = 'good'").await.remove(0);
    let key = document(&scene, &good, "archive_key").await.unwrap();
    assert_eq!(
        scene.cold_bytes(&key).await.as_deref(),
        Some(&b"good bytes"[..])
    );
}

// -- 5. parent scope ---------------------------------------------------------

const ALBUMS_POSTGRES: &str = "
CREATE TABLE albums (id bigint PRIMARY KEY, owner text NOT NULL, status text NOT NULL,
                     status_before text, finished_at timestamptz);
CREATE TABLE photos (id bigint PRIMARY KEY, album_id bigint NOT NULL REFERENCES albums (id),
                     path text, size bigint);";

const ALBUMS_SQLITE: &str = "
CREATE TABLE albums (id INTEGER PRIMARY KEY, owner TEXT NOT NULL, status TEXT NOT NULL,
                     status_before TEXT, finished_at TEXT);
CREATE TABLE photos (id INTEGER PRIMARY KEY, album_id INTEGER NOT NULL REFERENCES albums (id),
                     path TEXT, size INTEGER);";

const PHOTOS: &str = r#"[[sources]]
name = "photos"
table = "photos"
key = "id"
cold_key = "albums/{album_id}/{id}"
side_table = "coldsweep_photos"

[sources.hot]
bucket = "images"
path_column = "path"

[sources.columns]
stored_size = "size"

[sources.rule]
scope = "parent"
keep_newest = 1
group_by = ["owner"]
age_column = "finished_at"

[sources.parent]
table = "albums"
key = "id"
foreign_key = "album_id"
status_column = "status"
finished = ["done"]
set = "archived"
previous_status_column = "status_before"
"#;

async fn album_status(scene: &Scene) -> Vec<(String, String, Option<String>)> {
    texts(
        scene,
        "SELECT CAST(id AS TEXT) AS k, status, status_before FROM albums ORDER BY id",
    )
    .await
    .into_iter()
    .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap(), r[2].clone()))
    .collect()
}

/// `scope = "parent"`: the newest finished album of each owner stays, the
/// others move with all their photos; an album is marked only when none
/// of its photos is left hot, its previous status kept.
async fn parents_move_whole_and_are_marked_when_empty(postgres: bool) {
    let scene = Scene::new(postgres).await;
    scene
        .exec(if postgres {
            ALBUMS_POSTGRES
        } else {
            ALBUMS_SQLITE
        })
        .await;
    scene
        .exec(
            "INSERT INTO albums (id, owner, status, finished_at) VALUES
                 (1, 'u1', 'done', '2024-01-01T00:00:00Z'),
                 (2, 'u1', 'done', '2024-02-01T00:00:00Z'),
                 (3, 'u1', 'done', '2024-03-01T00:00:00Z'),
                 (4, 'u1', 'open', NULL),
                 (5, 'u2', 'done', '2024-01-01T00:00:00Z')",
        )
        .await;
    let photos = [
        (1, 1),
        (2, 1),
        (3, 1),
        (4, 2),
        (5, 2),
        (6, 3),
        (7, 4),
        (8, 5),
    ];
    for (id, album) in photos {
        let body = format!("photo {id}");
        scene
            .exec(&format!(
                "INSERT INTO photos (id, album_id, path, size)
                 VALUES ({id}, {album}, 'a/{album}/{id}.jpg', {})",
                body.len()
            ))
            .await;
        scene
            .put("images", &format!("a/{album}/{id}.jpg"), body.into_bytes())
            .await;
    }
    let sources = scene.sources(PHOTOS).await;
    let (hot, faults) = FaultyStore::wrap(scene.hot.clone());
    let stuck = Location::new("images", ObjectKey::new("a/2/5.jpg").unwrap());
    faults.fail_delete_of(&stuck, Some(Fault::Denied));

    let first = archiver_at(&scene, hot.clone(), &sources, now())
        .sweep()
        .await;
    assert_eq!(
        (first.archived, first.failed, first.jobs_archived),
        (4, 1, 1),
        "{first:?}"
    );
    for (id, album) in photos {
        let path = format!("a/{album}/{id}.jpg");
        let moves = album <= 2;
        let cold = scene.cold_bytes(&format!("albums/{album}/{id}")).await;
        assert_eq!(cold.is_some(), moves, "photo {id}");
        let hot_left = scene.hot_exists("images", &path).await;
        assert_eq!(hot_left, !moves || id == 5, "photo {id}");
    }
    let source = &sources[0];
    // The sweep's marker ran after its moves; nothing is left to mark.
    assert_eq!(source.mark_parents().await.unwrap(), 0);
    let done = |id: &str| (id.to_owned(), "done".to_owned(), None);
    assert_eq!(
        album_status(&scene).await,
        [
            (
                "1".to_owned(),
                "archived".to_owned(),
                Some("done".to_owned())
            ),
            done("2"),
            done("3"),
            ("4".to_owned(), "open".to_owned(), None),
            done("5"),
        ],
        "album 2 still has a photo hot"
    );

    faults.fail_delete_of(&stuck, None);
    let second = archiver_at(&scene, hot, &sources, now() + Duration::days(1))
        .sweep()
        .await;
    assert!(second.is_clean(), "{second:?}");
    assert_eq!(
        (second.archived, second.jobs_archived),
        (1, 1),
        "{second:?}"
    );
    assert!(!scene.hot_exists("images", "a/2/5.jpg").await);
    let statuses = album_status(&scene).await;
    assert_eq!(
        statuses[1],
        (
            "2".to_owned(),
            "archived".to_owned(),
            Some("done".to_owned())
        )
    );
    assert_eq!(statuses[2], done("3"), "the newest of u1 stays");
    assert_eq!(statuses[4], done("5"), "the newest of u2 stays");
    assert_eq!(source.mark_parents().await.unwrap(), 0);
    // Every photo of the kept albums is still hot.
    for path in ["a/3/6.jpg", "a/4/7.jpg", "a/5/8.jpg"] {
        assert!(scene.hot_exists("images", path).await, "{path}");
    }
}

// -- 6. identifiers that try to escape ---------------------------------------

/// Names that try to escape their quotes are refused before any SQL runs,
/// and so is a condition that tries to end its statement; the tables are
/// intact afterwards.
async fn escaping_names_are_refused(postgres: bool) {
    let scene = Scene::new(postgres).await;
    let before = (
        document_ids(&scene, "1 = 1").await,
        texts(
            &scene,
            "SELECT CAST(id AS TEXT) AS k FROM posts ORDER BY id",
        )
        .await,
    );
    use SpecProblemKind as K;
    let attempts: [(&str, &str, K, &str); 14] = [
        (
            "table = \"documents\"",
            "table = \"documents; DROP TABLE posts\"",
            K::BadIdentifier,
            "table",
        ),
        (
            "key = \"id\"",
            "key = 'id\" OR 1=1 --'",
            K::BadIdentifier,
            "key",
        ),
        (
            "side_table = \"coldsweep_documents\"",
            "side_table = 'coldsweep_documents\"; DROP TABLE posts; --'",
            K::BadIdentifier,
            "side_table",
        ),
        (
            "path_column = \"path\"",
            "path_column = \"o'brien\"",
            K::BadIdentifier,
            "hot.path_column",
        ),
        (
            "bucket_column = \"bucket\"",
            "bucket_column = 'bucket\" --'",
            K::BadIdentifier,
            "hot.bucket_column",
        ),
        (
            "group_by = [\"org_id\", \"bucket\"]",
            "group_by = [\"org_id\", \"bucket) OR (1=1\"]",
            K::BadIdentifier,
            "rule.group_by",
        ),
        (
            "age_column = \"created_at\"",
            "age_column = \"created_at; DROP TABLE posts\"",
            K::BadIdentifier,
            "rule.age_column",
        ),
        (
            "stored_size = \"size\"",
            "stored_size = 'size\"--'",
            K::BadIdentifier,
            "columns.stored_size",
        ),
        (
            "digest = \"digest\"",
            "digest = \"di'gest\"",
            K::BadIdentifier,
            "columns.digest",
        ),
        (
            "key_column = \"archive_key\"",
            "key_column = \"archive_key = NULL; --\"",
            K::BadIdentifier,
            "cold.key_column",
        ),
        (
            "order_by = \"created_at\"",
            "order_by = \"created_at DESC; DROP TABLE posts\"",
            K::BadIdentifier,
            "rule.order_by",
        ),
        (
            "table = \"posts\"",
            "table = \"public.posts; DROP TABLE documents\"",
            K::BadIdentifier,
            "table",
        ),
        // A placeholder is a name too: refused as the template's problem.
        (
            "cold_key = \"posts/{id}/{image_path}\"",
            "cold_key = 'posts/{id\" OR 1=1 --}/{image_path}'",
            K::BadTemplate,
            "cold_key",
        ),
        (
            "condition = \"filename <> 'keep.pdf'\"",
            "condition = \"1=1); DROP TABLE posts; --\"",
            K::BadCondition,
            "rule.condition",
        ),
    ];
    for (old, new, kind, setting) in attempts {
        assert!(DECLARATIONS.contains(old), "{old}");
        let text = DECLARATIONS.replacen(old, new, 1);
        let errors = parse_sources(&text).expect_err(new);
        let problems = errors.problems();
        assert_eq!(problems.len(), 1, "{new}: {problems:?}");
        assert_eq!(
            (problems[0].kind, problems[0].setting.as_str()),
            (kind, setting),
            "{new}"
        );
    }
    let after = (
        document_ids(&scene, "1 = 1").await,
        texts(
            &scene,
            "SELECT CAST(id AS TEXT) AS k FROM posts ORDER BY id",
        )
        .await,
    );
    assert_eq!(after, before);
    assert_eq!(before.1.len(), 2);
}

macro_rules! on_both_backends {
    ($($check:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test]
                async fn $check() {
                    super::$check(true).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test]
                async fn $check() {
                    super::$check(false).await;
                }
            )*
        }
    };
}

on_both_backends!(
    claims_follow_the_rule_and_leases,
    concurrent_claims_are_disjoint,
    states_and_back_offs_decide_claims,
    lost_leases_change_nothing,
    a_switch_without_delete_is_finished,
    a_kept_path_is_not_claimed_again,
    a_failed_hot_delete_is_finished_next_sweep,
    times_decide_min_age_as_instants,
    a_composite_group_keeps_the_newest_of_each,
    digests_and_sizes_are_checked,
    an_md5_digest_is_checked,
    parents_move_whole_and_are_marked_when_empty,
    escaping_names_are_refused,
);
