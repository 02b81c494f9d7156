//! What `probe tune` reads: the receive path's settings, each with its value
//! or why it could not be read. Recordings carry them; advice cites them.

use serde::{Deserialize, Serialize};

/// One setting: its value, or why it could not be read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Setting {
    pub name: String,
    pub value: Option<String>,
    pub error: Option<String>,
}

impl Setting {
    pub fn from(name: impl Into<String>, r: Result<String, String>) -> Setting {
        let (value, error) = match r {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(e)),
        };
        Setting {
            name: name.into(),
            value,
            error,
        }
    }
}

/// Settings of one interface.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceSettings {
    pub iface: String,
    pub settings: Vec<Setting>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub netns: String,
    /// net.core.*, net.ipv4.udp_mem and the TCP listener's limits. Read in the namespace where they are
    /// visible: most net.core knobs are node-wide and exist only in the host's.
    pub sysctls: Vec<Setting>,
    /// The NIC first, then the VXLAN devices.
    pub devices: Vec<DeviceSettings>,
    /// The NIC's lower devices: a bond's members, a VLAN's parent (their
    /// link speed and duplex are the NIC's in fact).
    #[serde(default)]
    pub lower: Vec<DeviceSettings>,
    /// The MTUs a pod's packet meets: the NIC, the VXLAN devices, the
    /// bridges the pods hang off, and each pod's end of its veth.
    #[serde(default)]
    pub mtu_chain: Vec<MtuHop>,
}

/// One device on the way to a pod, and its MTU.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MtuHop {
    /// `nic`, `vxlan`, `bridge` or `pod`.
    pub role: String,
    pub iface: String,
    /// The pod's namespace (a name under /run/netns); null on the node.
    pub netns: Option<String>,
    pub mtu: Option<u32>,
}
