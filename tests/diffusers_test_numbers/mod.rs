//! The result_sum / result_mean numbers written in diffusers' tests/schedulers/test_scheduler_*.py
//! for their full loops, with the tolerances those files use. Where a file checks only the mean,
//! the sum given is the one diffusers 0.42.1 computes here (the fixture), to diffusers' 1e-2.

/// The numbers in diffusers' test files: (result_sum, its tolerance, result_mean, its tolerance).
pub fn of(name: &str) -> (f64, f64, f64, f64) {
    match name {
        "pndm_no_noise" => (198.1318, 1e-2, 0.2580, 1e-3),
        "pndm_v_prediction" => (67.3986, 1e-2, 0.0878, 1e-3),
        "pndm_set_alpha_to_one" => (230.0399, 1e-2, 0.2995, 1e-3),
        "pndm_no_set_alpha_to_one" => (186.9482, 1e-2, 0.2434, 1e-3),
        "lms_no_noise" => (1006.388, 1e-2, 1.31, 1e-3),
        "lms_v_prediction" => (0.0017, 1e-2, 2.2676e-06, 1e-3),
        "lms_karras" => (3812.9927, 2e-2, 4.9648, 1e-3),
        "lms_with_noise" => (27663.6895, 1e-2, 36.0204, 1e-3),
        "euler_ancestral_no_noise" => (152.3192, 1e-2, 0.1983, 1e-3),
        "euler_ancestral_v_prediction" => (108.4439, 1e-2, 0.1412, 1e-3),
        "euler_ancestral_with_noise" => (56163.0508, 1e-2, 73.1290, 1e-3),
        "euler_no_noise" => (10.0807, 1e-2, 0.0131, 1e-3),
        "euler_v_prediction" => (0.0002, 1e-2, 2.2676e-06, 1e-3),
        "euler_karras" => (124.52299499511719, 1e-2, 0.16213932633399963, 1e-3),
        "euler_with_noise" => (57062.9297, 1e-2, 74.3007, 1e-3),
        "heun_no_noise" => (0.1233, 1e-2, 0.0002, 1e-3),
        "heun_v_prediction" => (4.6934e-07, 1e-2, 6.1112e-10, 1e-3),
        "heun_karras" => (0.00015, 1e-2, 1.9869554535034695e-07, 1e-2),
        "heun_with_noise" => (75074.8906, 1e-2, 97.7538, 1e-3),
        "ddim_no_noise" => (172.0067, 1e-2, 0.223967, 1e-3),
        "ddim_v_prediction" => (52.5302, 1e-2, 0.0684, 1e-3),
        "ddim_set_alpha_to_one" => (149.8295, 1e-2, 0.1951, 1e-3),
        "ddim_no_set_alpha_to_one" => (149.0784, 1e-2, 0.1941, 1e-3),
        "ddim_with_noise" => (354.5418, 1e-2, 0.4616, 1e-3),
        "ddpm_no_noise" => (258.9606, 1e-2, 0.3372, 1e-3),
        "ddpm_v_prediction" => (202.0296, 1e-2, 0.2631, 1e-3),
        "ddpm_with_noise" => (387.9466, 1e-2, 0.5051, 1e-3),
        // test_scheduler_dpm_multi.py checks only the mean of most loops: its sums here are
        // diffusers' own, from this fixture.
        "dpm_multi_no_noise" => (253.5514, 1e-2, 0.3301, 1e-3),
        "dpm_multi_with_noise" => (318.4111, 1e-2, 0.4146, 1e-3),
        "dpm_multi_thres" => (872.7271, 1e-2, 1.1364, 1e-3),
        "dpm_multi_v_prediction" => (172.8740, 1e-2, 0.2251, 1e-3),
        "dpm_multi_karras_v" => (160.6642, 1e-2, 0.2096, 1e-3),
        "dpm_multi_lu_v" => (119.3648, 1e-2, 0.1554, 1e-3),
        // test_scheduler_unipc.py: likewise means only, but for with_noise.
        "unipc_no_noise" => (189.2318, 1e-2, 0.2464, 1e-3),
        "unipc_karras" => (224.6267, 1e-2, 0.2925, 1e-3),
        "unipc_v_prediction" => (77.8725, 1e-2, 0.1014, 1e-3),
        "unipc_karras_v" => (150.6873, 1e-2, 0.1966, 1e-3),
        "unipc_with_noise" => (315.5757, 1e-2, 0.4109, 1e-3),
        // test_scheduler_deis.py
        "deis_no_noise" => (183.6763, 1e-2, 0.23916, 1e-3),
        "deis_v_prediction" => (69.9438, 1e-2, 0.091, 1e-3),
        "deis_with_noise" => (315.3016, 1e-2, 0.41054, 1e-3),
        // test_scheduler_dpm_single.py
        "dpm_single_no_noise" => (214.3612, 1e-2, 0.2791, 1e-3),
        "dpm_single_uneven" => (197.6643, 1e-2, 0.2574, 1e-3),
        "dpm_single_karras" => (172.6809, 1e-2, 0.2248, 1e-3),
        "dpm_single_v_prediction" => (111.5982, 1e-2, 0.1453, 1e-3),
        "dpm_single_karras_v" => (49.8477, 1e-2, 0.0649, 1e-3),
        "dpm_single_with_noise" => (269.2187, 1e-2, 0.3505, 1e-3),
        // test_scheduler_kdpm2_discrete.py, test_scheduler_kdpm2_ancestral.py
        "kdpm2_no_noise" => (20.4125, 1e-2, 0.0266, 1e-3),
        "kdpm2_v_prediction" => (4.6934e-07, 1e-2, 6.1112e-10, 1e-3),
        "kdpm2_with_noise" => (70408.4062, 1e-2, 91.6776, 1e-3),
        "kdpm2_ancestral_no_noise" => (13979.9433, 1e-2, 18.2030, 5e-3),
        "kdpm2_ancestral_v_prediction" => (331.8133, 1e-2, 0.4320, 1e-3),
        "kdpm2_ancestral_with_noise" => (93087.3437, 1e-2, 121.2074, 5e-3),
        // test_scheduler_score_sde_ve.py: np.isclose (rtol 1e-5, atol 1e-8).
        "sde_ve_no_noise" => (14372758528.0, 1e-5 * 14372758528.0, 18714530.0, 1e-5 * 18714530.0),
        // test_scheduler_consistency_model.py
        "cm_onestep" => (192.7614, 1e-2, 0.2510, 1e-3),
        "cm_multistep" => (347.6357, 1e-2, 0.4527, 1e-3),
        "cm_with_noise" => (763.9186, 1e-2, 0.9947, 1e-3),
        // test_scheduler_edm_euler.py, test_scheduler_edm_dpmsolver_multistep.py
        "edm_euler_no_noise" => (34.1855, 1e-3, 0.044, 1e-3),
        "edm_dpm_no_noise" => (0.0, f64::INFINITY, 0.0001, 1e-3),
        "edm_dpm_with_noise" => (8.1661, 1e-2, 0.0106, 1e-3),
        "edm_dpm_thres" => (0.0, f64::INFINITY, 0.0080, 1e-3),
        "edm_dpm_v_prediction" => (0.0, f64::INFINITY, 0.0092, 1e-3),
        other => panic!("no diffusers test numbers for {other}"),
    }
}
