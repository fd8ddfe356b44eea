//! Characters XML forbids.

use crate::common::binary::Binary;
use crate::common::{self, Client};
use crate::{own_items, NODE};
use stanza::ns;

/// §2.9: characters XML forbids never reach the store: the publish that
/// carries one ends the stream with `<not-well-formed/>`, and a follower
/// logging in later is replayed nothing that would break its parser.
#[tokio::test]
async fn forbidden_characters_end_the_stream_and_are_not_stored() {
    let srv = Binary::start(&[("jane", "pw")], "");
    for (i, bad) in ["\u{FFFF}", "\u{FFFE}", "&#x1;", "<![CDATA[\u{1}]]>"]
        .iter()
        .enumerate()
    {
        let (mut jane, _) = Client::login_plain(srv.addr, "jane", "pw", &format!("r{i}")).await;
        jane.send(&format!(
            "<iq type='set' id='pub'><pubsub xmlns='{}'><publish node='{NODE}'><item id='bad{i}'>\
             <entry xmlns='http://www.w3.org/2005/Atom'><title>{bad}</title></entry></item>\
             </publish></pubsub></iq>",
            ns::PUBSUB
        ))
        .await;
        assert_eq!(jane.stream_error().await, "not-well-formed", "{bad:?}");
    }
    let (mut jane, _) = Client::login_plain(srv.addr, "jane", "pw", "after").await;
    let r = own_items(&mut jane).await;
    assert_eq!(
        common::error_conditions(&r),
        ["item-not-found"],
        "nothing stored"
    );
    srv.stop();
}
