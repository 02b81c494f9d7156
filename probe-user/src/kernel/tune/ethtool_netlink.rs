//! Rings, channels, coalescing and offload features through the kernel's
//! ethtool generic-netlink family (the rust-netlink `ethtool` crate).

use super::Setting;

/// Rings, channels, coalescing, GRO and LRO of `iface` (in the calling
/// thread's namespace), as `ethtool -g/-l/-c/-k` show them: through the
/// kernel's ethtool generic-netlink family (Linux >= 5.6), with the
/// rust-netlink `ethtool` crate on a single-threaded runtime. The socket is
/// opened on this thread, so in its network namespace.
pub fn ethtool_settings(iface: &str) -> Vec<Setting> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build();
    match runtime {
        Ok(rt) => rt.block_on(ethtool_query(iface)),
        Err(e) => ethtool_unreadable(&format!("no async runtime: {e}")),
    }
}

/// Every ethtool item, each with the same reason it could not be read.
fn ethtool_unreadable(why: &str) -> Vec<Setting> {
    ETHTOOL_ITEMS
        .iter()
        .map(|name| Setting::from(*name, Err(why.to_string())))
        .collect()
}

/// The items ethtool_settings lists, in order.
const ETHTOOL_ITEMS: [&str; 7] = [
    "link",
    "ring rx",
    "ring tx",
    "channels",
    "coalesce rx",
    "gro",
    "lro",
];

/// The first reply to an ethtool GET, or why there is none.
async fn first_reply<S>(
    request: impl std::future::Future<Output = Result<S, ethtool::EthtoolError>>,
) -> Result<Vec<ethtool::EthtoolAttr>, String>
where
    S: futures_util::Stream<
            Item = Result<
                netlink_packet_generic::GenlMessage<ethtool::EthtoolMessage>,
                ethtool::EthtoolError,
            >,
        > + Unpin,
{
    use futures_util::StreamExt;
    let describe = |e: ethtool::EthtoolError| match &e {
        ethtool::EthtoolError::NetlinkError(m) => match m.code.map(|c| -c.get()) {
            Some(libc::EOPNOTSUPP) => "not supported by the driver".to_string(),
            Some(errno) => std::io::Error::from_raw_os_error(errno).to_string(),
            None => e.to_string(),
        },
        _ => e.to_string(),
    };
    let mut replies = request.await.map_err(describe)?;
    match replies.next().await {
        Some(Ok(msg)) => Ok(msg.payload.nlas),
        Some(Err(e)) => Err(describe(e)),
        None => Err("no reply".into()),
    }
}

async fn ethtool_query(iface: &str) -> Vec<Setting> {
    use ethtool::{
        EthtoolAttr as A, EthtoolChannelAttr as Ch, EthtoolCoalesceAttr as Co,
        EthtoolFeatureAttr as F, EthtoolLinkModeAttr as L, EthtoolLinkModeDuplex,
        EthtoolRingAttr as R,
    };
    let (connection, mut handle, _) = match ethtool::new_connection() {
        Ok(c) => c,
        Err(e) => return ethtool_unreadable(&format!("ethtool netlink: {e}")),
    };
    let connection = tokio::spawn(connection);
    let mut out = Vec::new();

    // Speed (Mb/s; SPEED_UNKNOWN is u32::MAX), duplex, autonegotiation.
    let link = first_reply(handle.link_mode().get(Some(iface)).execute())
        .await
        .map(|nlas| {
            let (mut speed, mut duplex, mut autoneg) = (None, "unknown", false);
            for a in nlas {
                match a {
                    A::LinkMode(L::Speed(s)) if s != u32::MAX => speed = Some(s),
                    A::LinkMode(L::Duplex(EthtoolLinkModeDuplex::Full)) => duplex = "full",
                    A::LinkMode(L::Duplex(EthtoolLinkModeDuplex::Half)) => duplex = "half",
                    A::LinkMode(L::Autoneg(on)) => autoneg = on,
                    _ => {}
                }
            }
            let speed = speed.map_or("unknown".to_string(), |s| format!("{s}Mb/s"));
            format!("speed {speed} duplex {duplex} autoneg {}", on_off(autoneg))
        });
    out.push(Setting::from("link", link));

    // [rx, rx max, tx, tx max]
    let ring = first_reply(handle.ring().get(Some(iface)).execute())
        .await
        .map(|nlas| {
            let mut v = [None; 4];
            for a in nlas {
                match a {
                    A::Ring(R::Rx(n)) => v[0] = Some(n),
                    A::Ring(R::RxMax(n)) => v[1] = Some(n),
                    A::Ring(R::Tx(n)) => v[2] = Some(n),
                    A::Ring(R::TxMax(n)) => v[3] = Some(n),
                    _ => {}
                }
            }
            v
        });
    for (item, now, max) in [("ring rx", 0, 1), ("ring tx", 2, 3)] {
        let value = ring.clone().and_then(|v| match (v[now], v[max]) {
            (Some(n), Some(m)) => Ok(format!("{n} (max {m})")),
            _ => Err("not reported".to_string()),
        });
        out.push(Setting::from(item, value));
    }

    let channels = first_reply(handle.channel().get(Some(iface)).execute())
        .await
        .map(|nlas| {
            let (mut rx, mut tx, mut combined, mut max_combined) = (0, 0, 0, 0);
            for a in nlas {
                match a {
                    A::Channel(Ch::RxCount(v)) => rx = v,
                    A::Channel(Ch::TxCount(v)) => tx = v,
                    A::Channel(Ch::CombinedCount(v)) => combined = v,
                    A::Channel(Ch::CombinedMax(v)) => max_combined = v,
                    _ => {}
                }
            }
            format!("rx {rx} tx {tx} combined {combined} (max combined {max_combined})")
        });
    out.push(Setting::from("channels", channels));

    let coalesce = first_reply(handle.coalesce().get(Some(iface)).execute())
        .await
        .map(|nlas| {
            let (mut usecs, mut frames, mut adaptive) = (0, 0, false);
            for a in nlas {
                match a {
                    A::Coalesce(Co::RxUsecs(v)) => usecs = v,
                    A::Coalesce(Co::RxMaxFrames(v)) => frames = v,
                    A::Coalesce(Co::UseAdaptiveRx(v)) => adaptive = v,
                    _ => {}
                }
            }
            format!(
                "rx-usecs {usecs} rx-frames {frames} adaptive-rx {}",
                on_off(adaptive)
            )
        });
    out.push(Setting::from("coalesce rx", coalesce));

    // Features by their ethtool names (net/ethtool/common.c netdev_features_strings).
    let features = first_reply(handle.feature().get(Some(iface)).execute()).await;
    for (item, feature) in [("gro", "rx-gro"), ("lro", "large-receive-offload")] {
        let value = features.as_ref().map_err(Clone::clone).map(|nlas| {
            let active = nlas.iter().any(|a| match a {
                A::Feature(F::Active(bits)) => bits.iter().any(|b| b.name == feature && b.value),
                _ => false,
            });
            // Not among the active bits: the device has it off.
            on_off(active)
        });
        out.push(Setting::from(item, value));
    }
    connection.abort();
    out
}

pub(super) fn on_off(b: bool) -> String {
    if b { "on" } else { "off" }.to_string()
}
