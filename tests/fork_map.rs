//! `fork::try_map` returns a share's panic as that share's result (the other shares' results
//! intact), `fork::map` raises it, and the pool runs the next fork as before.

use ddim_webgpu::fast::fork;

#[test]
fn a_panicking_share_comes_back_as_its_result() {
    std::panic::set_hook(Box::new(|_| {})); // the panics below are expected
    for _ in 0..20 {
        let out = fork::try_map(vec![1, 2, 3, 4], |_, v: i32| if v == 3 { panic!("share {v} broke") } else { v * 10 });
        let got: Vec<Result<i32, String>> = out.into_iter().map(|r| r.map_err(|p| fork::panic_message(&*p).to_string())).collect();
        assert_eq!(got, vec![Ok(10), Ok(20), Err("share 3 broke".into()), Ok(40)]);
    }
    let raised = std::panic::catch_unwind(|| fork::map(vec![1, 2], |_, v: i32| if v == 2 { panic!("second") } else { v }));
    assert_eq!(raised.map_err(|p| fork::panic_message(&*p).to_string()), Err("second".into()));
    assert_eq!(fork::map(vec![1, 2, 3], |_, v| v + 1), vec![2, 3, 4], "the pool works after");
}
