//! `fast::fork` once a pool thread has failed (`poison`, which the browser's fork workers call when
//! their instance traps): every later fork fails with a message naming the cause, at once, instead
//! of waiting for a share that will never end. Its own test binary: the mark is process-wide.

#[test]
fn a_poisoned_pool_fails_every_fork_by_name() {
    use ddim_webgpu::fast::fork;
    assert_eq!(fork::map(vec![1, 2, 3], |_, v| v * 2), vec![2, 4, 6], "the pool works before");
    fork::poison();
    let err = std::panic::catch_unwind(|| fork::map(vec![1, 2], |_, v| v)).expect_err("a fork after the pool was marked broken");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("a CPU thread stopped"), "{msg}");
}
