//! `/proc/PID/cgroup` → container id, container runtime and pod UID.
//!
//! Kubelet and the container runtimes name cgroups after the pod UID and
//! the container id, so the cgroup path alone says which container a
//! process is in, without asking the runtime. The layouts we recognise:
//!
//! | driver | cgroup path of a container |
//! |---|---|
//! | systemd, containerd | `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<UID_>.slice/cri-containerd-<ID>.scope` |
//! | systemd, CRI-O | `…/kubepods-pod<UID_>.slice/crio-<ID>.scope` |
//! | systemd, Docker (cri-dockerd) | `…/kubepods-besteffort-pod<UID_>.slice/docker-<ID>.scope` |
//! | cgroupfs, any runtime | `/kubepods/burstable/pod<UID>/<ID>` (Guaranteed pods: `/kubepods/pod<UID>/<ID>`) |
//! | no Kubernetes | `/system.slice/docker-<ID>.scope`, `/docker/<ID>`, `/machine.slice/libpod-<ID>.scope` |
//!
//! `<UID_>` is the pod UID with `_` for `-` (systemd reserves `-` as its
//! hierarchy separator). The same paths appear on every line of a cgroup
//! v1 file (`4:memory:/kubepods/…`) and on the single `0::/…` line of
//! cgroup v2. Inside a container with its own cgroup namespace, paths of
//! other pods read from the host's /proc start with `/../..`: we match
//! path components, so that prefix does not matter.

use std::borrow::Cow;

/// A container id is 64 hex digits for containerd, CRI-O, Docker and Podman.
const CONTAINER_ID_LEN: usize = 64;
/// A pod UID is an RFC 4122 UUID in text form.
const POD_UID_LEN: usize = 36;

/// The container runtime, as OpenTelemetry's `container.runtime` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// `cri-containerd-ID.scope` (systemd driver).
    Containerd,
    /// `crio-ID.scope`.
    CriO,
    /// `docker-ID.scope` or `/docker/ID`.
    Docker,
    /// `libpod-ID.scope`.
    Podman,
    /// A bare id (cgroupfs driver): the runtime is not in the path.
    Unknown,
}

impl Runtime {
    /// The attribute value; `None` when the path does not say.
    pub fn as_str(self) -> Option<&'static str> {
        match self {
            Runtime::Containerd => Some("containerd"),
            Runtime::CriO => Some("cri-o"),
            Runtime::Docker => Some("docker"),
            Runtime::Podman => Some("podman"),
            Runtime::Unknown => None,
        }
    }
}

/// What a process's cgroup says about it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupInfo {
    /// The cgroup v2 path (`0::` line); on a cgroup v1 only host, the path
    /// of the line that named a container (else the first line's).
    pub path: String,
    /// The container id, if the process is in a container.
    pub container_id: Option<String>,
    /// Which runtime made the container, when the path says.
    pub runtime: Option<Runtime>,
    /// The pod UID (with dashes), if the process is in a Kubernetes pod.
    pub pod_uid: Option<String>,
}

/// Parses the text of `/proc/PID/cgroup` (v1, v2 or hybrid).
///
/// The v2 line is tried first; v1 lines are tried when it names no
/// container (a hybrid host where the runtime only uses v1 controllers).
pub fn parse(text: &str) -> CgroupInfo {
    let mut v2 = None;
    let mut v1 = Vec::new();
    for line in text.lines() {
        // `hierarchy-id:controllers:path`; the path may itself hold `:`.
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            v2 = Some(path);
        } else {
            v1.push(path);
        }
    }
    let mut first = None;
    for path in v2.into_iter().chain(v1) {
        let info = parse_path(path);
        if info.container_id.is_some() || info.pod_uid.is_some() {
            return info;
        }
        first.get_or_insert(info);
    }
    first.unwrap_or_default()
}

/// Reads container id, runtime and pod UID out of one cgroup path.
pub fn parse_path(path: &str) -> CgroupInfo {
    let mut info = CgroupInfo {
        path: path.to_string(),
        ..CgroupInfo::default()
    };
    for component in path.split('/') {
        if let Some(uid) = pod_uid(component) {
            info.pod_uid = Some(uid.into_owned());
        } else if let Some((id, runtime)) = container_id(component) {
            // The deepest container id wins: nested runtimes (kind, Docker
            // in Docker) put the inner container below the outer one.
            info.container_id = Some(id.to_string());
            info.runtime = Some(runtime);
        }
    }
    info
}

/// `pod<UID>` (cgroupfs) or `kubepods[-<qos>]-pod<UID_>.slice` (systemd).
fn pod_uid(component: &str) -> Option<Cow<'_, str>> {
    if let Some(uid) = component.strip_prefix("pod") {
        return is_uid(uid).then_some(Cow::Borrowed(uid));
    }
    let slice = component.strip_prefix("kubepods")?.strip_suffix(".slice")?;
    let (_, uid) = slice.rsplit_once("-pod")?;
    let uid = uid.replace('_', "-");
    is_uid(&uid).then_some(Cow::Owned(uid))
}

fn is_uid(text: &str) -> bool {
    text.len() == POD_UID_LEN && text.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// A container's cgroup: `<prefix>-<ID>.scope` (systemd) or a bare `<ID>`.
fn container_id(component: &str) -> Option<(&str, Runtime)> {
    if let Some(scope) = component.strip_suffix(".scope") {
        const PREFIXES: [(&str, Runtime); 4] = [
            ("cri-containerd-", Runtime::Containerd),
            ("crio-", Runtime::CriO),
            ("docker-", Runtime::Docker),
            ("libpod-", Runtime::Podman),
        ];
        // `crio-conmon-ID.scope` is CRI-O's monitor process, not the
        // container: its remainder is not hex, so it does not match.
        return PREFIXES.iter().find_map(|(prefix, runtime)| {
            let id = scope.strip_prefix(prefix)?;
            is_container_id(id).then_some((id, *runtime))
        });
    }
    is_container_id(component).then_some((component, Runtime::Unknown))
}

fn is_container_id(text: &str) -> bool {
    text.len() == CONTAINER_ID_LEN && text.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f1b2a8c9d0e4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c";
    const UID: &str = "0e5a6b1c-2d3e-4f50-8a9b-0c1d2e3f4a5b";
    const UID_: &str = "0e5a6b1c_2d3e_4f50_8a9b_0c1d2e3f4a5b";

    fn check(text: &str, runtime: Option<Runtime>, pod: bool) {
        let info = parse(text);
        assert_eq!(info.container_id.as_deref(), Some(ID), "{text}");
        assert_eq!(info.runtime, runtime, "{text}");
        assert_eq!(info.pod_uid.as_deref(), pod.then_some(UID), "{text}");
    }

    #[test]
    fn cgroup_v2_systemd_driver() {
        let burstable = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope\n"
        );
        check(&burstable, Some(Runtime::Containerd), true);
        let guaranteed = format!("0::/kubepods.slice/kubepods-pod{UID_}.slice/crio-{ID}.scope\n");
        check(&guaranteed, Some(Runtime::CriO), true);
        let besteffort = format!(
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/docker-{ID}.scope\n"
        );
        check(&besteffort, Some(Runtime::Docker), true);
    }

    #[test]
    fn cgroup_v2_cgroupfs_driver() {
        check(
            &format!("0::/kubepods/burstable/pod{UID}/{ID}\n"),
            Some(Runtime::Unknown),
            true,
        );
        check(&format!("0::/kubepods/pod{UID}/{ID}\n"), Some(Runtime::Unknown), true);
    }

    #[test]
    fn cgroup_v1_both_drivers() {
        let cgroupfs = format!(
            "12:pids:/kubepods/besteffort/pod{UID}/{ID}\n11:memory:/kubepods/besteffort/pod{UID}/{ID}\n1:name=systemd:/kubepods/besteffort/pod{UID}/{ID}\n"
        );
        check(&cgroupfs, Some(Runtime::Unknown), true);
        let systemd = format!(
            "5:cpu,cpuacct:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope\n"
        );
        check(&systemd, Some(Runtime::Containerd), true);
    }

    #[test]
    fn hybrid_host_falls_back_to_v1_lines() {
        let text = format!("4:memory:/kubepods/pod{UID}/{ID}\n0::/\n");
        check(&text, Some(Runtime::Unknown), true);
        assert_eq!(parse(&text).path, format!("/kubepods/pod{UID}/{ID}"));
    }

    #[test]
    fn containers_without_kubernetes() {
        check(
            &format!("0::/system.slice/docker-{ID}.scope\n"),
            Some(Runtime::Docker),
            false,
        );
        check(
            &format!("0::/machine.slice/libpod-{ID}.scope\n"),
            Some(Runtime::Podman),
            false,
        );
        check(&format!("11:devices:/docker/{ID}\n"), Some(Runtime::Unknown), false);
    }

    #[test]
    fn foreign_cgroup_namespace_prefix_is_ignored() {
        let text = format!("0::/../../kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope\n");
        check(&text, Some(Runtime::Containerd), true);
    }

    #[test]
    fn host_processes_and_conmon_have_no_container() {
        let host = parse("0::/system.slice/sshd.service\n");
        assert_eq!(host.container_id, None);
        assert_eq!(host.pod_uid, None);
        assert_eq!(host.path, "/system.slice/sshd.service");
        let conmon = parse(&format!(
            "0::/kubepods.slice/kubepods-pod{UID_}.slice/crio-conmon-{ID}.scope\n"
        ));
        assert_eq!(conmon.container_id, None);
        assert_eq!(conmon.pod_uid.as_deref(), Some(UID), "conmon still belongs to the pod");
        assert_eq!(parse(""), CgroupInfo::default());
    }
}
