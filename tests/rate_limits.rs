//! Rate limits on token requests (CONTRACT section 10): `limits.per_principal`
//! and `limits.per_target` (e.g. `"50/s"`, none by default). Beyond them the
//! token endpoint answers `429 slow_down` with `Retry-After` and a
//! `decision_id`, counts `writ_rate_limited_total{limit}` and audits the
//! refusal (sampled); other principals and targets, and the admin API, are
//! not affected; an invalid rate stops the broker at start.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use common::*;

#[track_caller]
fn assert_slowed_down(reply: &Reply) {
    assert_refused(reply, 429, "slow_down");
    let retry_after: u64 = reply
        .header("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After: {}", reply.describe()))
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After is not whole seconds: {}", reply.describe()));
    assert!(retry_after >= 1, "{}", reply.describe());
    assert!(reply.decision_id().is_some(), "{}", reply.describe());
}

#[tokio::test]
async fn a_principal_beyond_its_limit_slows_down_and_another_principal_does_not() {
    let env = TestEnv::with_limits(&[r#"per_principal = "3/m""#]);
    let server = env.start().await;
    let api = orders_read(&env.k8s_token());
    for _ in 0..3 {
        assert_granted(&server.token(&api).await);
    }

    let refused = server.token(&api).await;

    assert_slowed_down(&refused);
    // 3/m: the next request is due in 20 seconds.
    let retry_after: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry_after), "{}", refused.describe());
    assert_granted(&server.token(&orders_read(&env.ci_token())).await);
    let metrics = server.metrics().await;
    assert!(
        metrics.contains(r#"writ_rate_limited_total{limit="per_principal"} 1"#),
        "{metrics}"
    );
    let decision_id = refused.decision_id().unwrap().to_owned();
    let record = env
        .audit_record_where("the refusal", |r| r["decision_id"] == decision_id.as_str())
        .await;
    assert_eq!(record["error"], "slow_down", "{record}");
    assert_eq!(record["decision"], "deny", "{record}");
    assert!(
        record["principal"].as_str().unwrap().contains(WORKLOAD),
        "{record}"
    );
}

#[tokio::test]
async fn refusals_beyond_the_limit_are_all_counted_but_audited_sampled() {
    let env = TestEnv::with_limits(&[r#"per_principal = "1/h""#]);
    let server = env.start().await;
    let api = orders_read(&env.k8s_token());
    assert_granted(&server.token(&api).await);

    let mut refused = 0;
    for _ in 0..6 {
        assert_slowed_down(&server.token(&api).await);
        refused += 1;
    }

    let metrics = server.metrics().await;
    assert!(
        metrics.contains(&format!(
            r#"writ_rate_limited_total{{limit="per_principal"}} {refused}"#
        )),
        "{metrics}"
    );
    let audited = eventually("a slow_down record", async || {
        let n = env
            .audit_records()
            .iter()
            .filter(|r| r["error"] == "slow_down")
            .count();
        if n > 0 { Ok(n) } else { Err("none yet".into()) }
    })
    .await;
    // The first refusal of each second is audited, never more than were refused.
    assert!(
        audited <= refused,
        "{audited} records for {refused} refusals"
    );
}

#[tokio::test]
async fn a_target_beyond_its_limit_slows_down_every_principal_and_other_targets_do_not() {
    let env = TestEnv::with_limits(&[r#"per_target = "2/m""#]);
    let server = env.start().await;
    assert_granted(&server.token(&orders_read(&env.k8s_token())).await);
    assert_granted(&server.token(&orders_read(&env.ci_token())).await);

    let refused = server.token(&orders_read(&env.k8s_token())).await;

    assert_slowed_down(&refused);
    assert!(
        refused.json["error_description"]
            .as_str()
            .unwrap()
            .contains("this target"),
        "{}",
        refused.describe()
    );
    // Another target is decided as usual (nothing permits ledger).
    let other = TokenRequest::exchange(&env.k8s_token(), LEDGER, "ledger.read");
    assert_refused(&server.token(&other).await, 403, "access_denied");
    let metrics = server.metrics().await;
    assert!(
        metrics.contains(r#"writ_rate_limited_total{limit="per_target"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn admin_endpoints_are_not_counted_against_the_limits() {
    let env = TestEnv::with_limits(&[r#"per_principal = "1/h""#, r#"per_target = "1/h""#]);
    let server = env.start().await;

    for _ in 0..5 {
        let reply = server
            .call(
                reqwest::Method::GET,
                "/admin/v1/revocations",
                Some(&env.admin_token),
                None,
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.describe());
        let reply = server
            .call(
                reqwest::Method::GET,
                "/admin/v1/inventory",
                Some(&env.admin_token),
                None,
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.describe());
    }
    // The limits are still whole for token requests.
    assert_granted(&server.token(&orders_read(&env.k8s_token())).await);
}

#[tokio::test]
async fn a_slowed_down_principal_is_served_again_once_its_interval_passes() {
    let env = TestEnv::with_limits(&[r#"per_principal = "1/s""#]);
    let server = env.start().await;
    let api = orders_read(&env.k8s_token());
    // Spend the allowance until the limit refuses.
    eventually("a 429", async || {
        let reply = server.token(&api).await;
        match reply.status {
            429 => Ok(reply),
            200 => Err("still granted".into()),
            _ => panic!("{}", reply.describe()),
        }
    })
    .await;

    let granted = eventually("a grant again", async || {
        let reply = server.token(&api).await;
        match reply.status {
            200 => Ok(reply),
            429 => Err(reply.describe()),
            _ => panic!("{}", reply.describe()),
        }
    })
    .await;

    assert_granted(&granted);
}

#[tokio::test]
async fn an_invalid_rate_stops_the_broker_naming_the_key() {
    for bad in [r#"per_principal = "fast""#, r#"per_target = "0/s""#] {
        let env = TestEnv::with_limits(&[bad]);
        env.write_config();

        let out = run_writ(
            env.dir(),
            &["--config", env.config_path().to_str().unwrap(), "serve"],
        )
        .await;

        assert_eq!(out.code, Some(1), "{bad}: {}", out.describe());
        let key = bad.split_once(' ').unwrap().0;
        assert!(out.stderr.contains(key), "{bad}: {}", out.describe());
    }
}
