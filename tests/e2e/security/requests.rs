//! Request-reply under permissions: asking needs the right to publish to
//! the topic, answering the right to subscribe to the pattern; the reply
//! itself needs only the token that came with the request.

use futures_util::StreamExt;
use sluice_client::ErrorCode;
use sluice_tests::{bounded, TestBroker};

use super::{connect, principals_toml, with_config, ADMIN_TOKEN, ORDERS_TOKEN, STEADY_TOKEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asking_and_answering_need_their_rights_and_the_reply_needs_only_the_token(
) -> anyhow::Result<()> {
    let broker = TestBroker::start_with(with_config(&principals_toml(""))).await?;
    let (orders, steady, admin) = (
        connect(&broker, Some(ORDERS_TOKEN)).await?,
        connect(&broker, Some(STEADY_TOKEN)).await?,
        connect(&broker, Some(ADMIN_TOKEN)).await?,
    );
    let timeout = std::time::Duration::from_secs(60);

    // `steady` may not listen on orders.>.
    let err = steady.respond("orders.>").await.expect_err("forbidden");
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");

    // `orders` answers on orders.lookup; `steady` may not ask there.
    let mut responder = orders.respond("orders.lookup").await?;
    let err = steady
        .request("orders.lookup", "x", timeout)
        .await
        .expect_err("forbidden");
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("orders.lookup") && text.contains("publish"),
        "{text}"
    );

    // `admin` may ask; `orders` answers, though it may not publish to
    // wherever the reply goes: the token is the right.
    let asking = {
        let admin = admin.clone();
        tokio::spawn(async move { admin.request("orders.lookup", "o-7", timeout).await })
    };
    let request = bounded("the request", responder.next())
        .await
        .expect("one")?;
    request.reply("found").await?;
    assert_eq!(bounded("the reply", asking).await??.payload, "found");
    Ok(())
}
