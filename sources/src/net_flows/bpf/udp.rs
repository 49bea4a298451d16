//! The UDP side: cgroup/sock_create and cgroup_skb programs on the cgroup
//! v2 root, which count every datagram of every socket on the node.

use sonde_ebpf::aya::programs::{CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock, ProgramError};
use sonde_ebpf::cgroup::cgroup2_root;
use sonde_ebpf::loader::{load_error, Object};
use sonde_ebpf::LoadError;

use super::{OBJECT, PROGRAM_UDP_EGRESS};

/// Attaches the UDP programs to the cgroup v2 root. Through bpf_link
/// (5.7+), which always allows other programs beside ours.
pub(super) fn attach_udp(object: &mut Object) -> Result<(), LoadError> {
    let attach_error = |program: &'static str, what: &str, source: ProgramError| LoadError::Attach {
        object: OBJECT,
        program,
        attach_point: what.to_string(),
        source: Box::new(source),
    };
    let root = cgroup2_root().map_err(|e| attach_error("flow_sock_create", "the cgroup v2 root", e.into()))?;
    let cgroup = std::fs::File::open(&root)
        .map_err(|e| attach_error("flow_sock_create", &format!("cgroup {}", root.display()), e.into()))?;
    let program = "flow_sock_create";
    let create: &mut CgroupSock = object.program_as(program)?;
    create.load().map_err(|e| load_error(OBJECT, program, e))?;
    create
        .attach(&cgroup, CgroupAttachMode::Single)
        .map_err(|e| attach_error(program, &format!("cgroup/sock_create {}", root.display()), e))?;
    for (program, direction) in [
        (PROGRAM_UDP_EGRESS, CgroupSkbAttachType::Egress),
        ("flow_udp_ingress", CgroupSkbAttachType::Ingress),
    ] {
        let skb: &mut CgroupSkb = object.program_as(program)?;
        skb.load().map_err(|e| load_error(OBJECT, program, e))?;
        skb.attach(&cgroup, direction, CgroupAttachMode::Single)
            .map_err(|e| attach_error(program, &format!("cgroup_skb {direction:?} {}", root.display()), e))?;
    }
    Ok(())
}
