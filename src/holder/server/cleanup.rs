//! What a killed nsrun left on the host: its --name and its link.

use super::*;

impl Holder {
    /// A name nsrun did not remove itself (it was killed): remove it, unless another
    /// sandbox holds the name by now (its lock). Done after the grace period, when a
    /// killed nsrun's files, its lock among them, are surely closed.
    pub(super) fn remove_names(&mut self, all: bool) {
        let now = Instant::now();
        let (mut due, later): (Vec<_>, Vec<_>) =
            self.names.drain(..).partition(|(_, at)| all || *at <= now);
        self.names = later;
        if all || !due.is_empty() {
            // Also names whose nsrun was killed before it told the holder: their lock
            // files are old and nobody holds them (a lock file seconds old is an nsrun
            // still starting).
            if let Ok(dir) = std::fs::read_dir(crate::names::STATE_DIR) {
                for entry in dir.flatten() {
                    let file = entry.file_name().to_string_lossy().into_owned();
                    let Some(name) = crate::names::name_of_lock(&file) else {
                        continue;
                    };
                    let old = entry
                        .metadata()
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age > Duration::from_secs(2));
                    if (old || all) && !due.iter().any(|(n, _)| n == name) {
                        due.push((name.to_string(), now));
                    }
                }
            }
        }
        for (name, _) in due {
            if crate::plan::validate_netns_name(&name).is_err() {
                continue;
            }
            let Ok(file) = std::fs::File::open(crate::names::lock_path(&name)) else {
                continue; // nsrun removed it on its way out
            };
            // Held: a running nsrun has the name (again). Otherwise it is a killed
            // nsrun's, and only a namespace it recorded is removed.
            if let Ok(_held) =
                nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            {
                crate::names::remove_stale(&name);
            }
        }
    }

    /// Deletes host ends whose sandbox is over but whose namespace something still holds.
    /// Normally the kernel has removed them with the namespace already.
    pub(super) fn remove_links(&mut self, all: bool) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) =
            self.links.drain(..).partition(|(_, at)| all || *at <= now);
        self.links = later;
        for (index, _) in due {
            let Ok(reply) = self
                .rtnl
                .get(route::get_link_by_index(index as i32), "RTM_GETLINK")
            else {
                continue; // gone already
            };
            let is_ours =
                route::parse_link(&reply).is_some_and(|l| crate::addr::is_sandbox_link(&l.name));
            if is_ours {
                let _ = self
                    .rtnl
                    .request(route::del_link(index as i32), "RTM_DELLINK");
            }
        }
    }
}
