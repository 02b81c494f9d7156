use super::fixture::{blob, info, kernel_like};
use super::*;

#[test]
fn members_through_anonymous_unions_and_enums() {
    // Strings referenced by member/enum entries are added first so their
    // offsets are known: "a"=1, "dev"=3, "net"=7, "R_A"=11, "R_B"=15.
    let strs = ["a", "dev", "net", "R_A", "R_B"];
    let types = vec![
        // 1: int
        ("int", info(KIND_INT, 0), 4, vec![32]),
        // 2: anonymous union { int dev @ 0 }
        ("", info(KIND_UNION, 1), 8, vec![3, 1, 0]),
        // 3: struct sk { int a @ 0; union (2) @ 64 bits; int net @ 128 bits }
        (
            "sk",
            info(KIND_STRUCT, 3),
            24,
            vec![1, 1, 0, 0, 2, 64, 7, 1, 128],
        ),
        // 4: enum reasons { R_A = 0, R_B = -2 }
        (
            "reasons",
            info(KIND_ENUM, 2),
            4,
            vec![11, 0, 15, (-2i32) as u32],
        ),
        // 5: enum64 big { R_A = 1 << 40 }
        ("big", info(KIND_ENUM64, 1), 8, vec![11, 0, 1 << 8]),
        // 6: func_proto with 2 params, then a struct after it still parses
        ("", info(KIND_FUNC_PROTO, 2), 0, vec![0, 1, 0, 1]),
        ("after", info(KIND_STRUCT, 1), 4, vec![1, 1, 0]),
    ];
    let btf = Btf::parse(&blob(&types, &strs)).unwrap();
    assert_eq!(btf.member_offset("sk", "a"), Ok(0));
    assert_eq!(btf.member_offset("sk", "dev"), Ok(8));
    assert_eq!(btf.member_offset("sk", "net"), Ok(16));
    assert_eq!(btf.member_offset("after", "a"), Ok(0));
    assert!(btf
        .member_offset("sk", "nope")
        .unwrap_err()
        .contains("sk.nope"));
    assert!(btf.member_offset("nope", "a").is_err());
    assert_eq!(
        btf.enum_values("reasons").unwrap(),
        vec![("R_A".into(), 0), ("R_B".into(), -2)]
    );
    assert_eq!(
        btf.enum_values("big").unwrap(),
        vec![("R_A".into(), 1 << 40)]
    );
}

#[test]
fn rejects_garbage() {
    assert!(Btf::parse(&[]).is_err());
    assert!(Btf::parse(&[0x9f, 0xeb, 1, 0, 24, 0]).is_err());
    let mut b = blob(&[("int", info(KIND_INT, 0), 4, vec![32])], &[]);
    b[0] = 0;
    assert!(Btf::parse(&b).is_err());
    let unknown = blob(&[("x", info(25, 0), 4, vec![])], &[]);
    assert!(Btf::parse(&unknown).unwrap_err().contains("kind"));
}

#[test]
fn tracepoint_prototypes_through_typedefs() {
    let types = vec![
        // 1: int
        ("int", info(KIND_INT, 0), 4, vec![32]),
        // 2: void (*)(void *, int, int, int): a tracepoint of 3 arguments
        (
            "",
            info(KIND_FUNC_PROTO, 4),
            0,
            vec![0, 0, 0, 1, 0, 1, 0, 1],
        ),
        // 3: ptr -> 2; 4: typedef btf_trace_new -> 3
        ("", info(KIND_PTR, 0), 2, vec![]),
        ("btf_trace_new", info(KIND_TYPEDEF, 0), 3, vec![]),
        // 5: const -> 3; 6: typedef btf_trace_const -> 5
        ("", info(KIND_CONST, 0), 3, vec![]),
        ("btf_trace_const", info(KIND_TYPEDEF, 0), 5, vec![]),
        // 7: void (*)(void *, int): 1 argument; 8: ptr; 9: typedef
        ("", info(KIND_FUNC_PROTO, 2), 0, vec![0, 0, 0, 1]),
        ("", info(KIND_PTR, 0), 7, vec![]),
        ("btf_trace_old", info(KIND_TYPEDEF, 0), 8, vec![]),
        // 10: typedef of an int; 11: a struct after them still parses
        ("u32_t", info(KIND_TYPEDEF, 0), 1, vec![]),
        ("after", info(KIND_STRUCT, 1), 4, vec![1, 1, 0]),
    ];
    let btf = Btf::parse(&blob(&types, &["a"])).unwrap();
    assert_eq!(btf.typedef_fn_params("btf_trace_new"), Ok(4));
    assert_eq!(btf.typedef_fn_params("btf_trace_const"), Ok(4));
    assert_eq!(btf.typedef_fn_params("btf_trace_old"), Ok(2));
    assert!(btf
        .typedef_fn_params("u32_t")
        .unwrap_err()
        .contains("not a function pointer"));
    assert!(btf
        .typedef_fn_params("btf_trace_none")
        .unwrap_err()
        .contains("btf_trace_none not in"));
    assert_eq!(btf.member_offset("after", "a"), Ok(0));
}

#[test]
fn drop_reasons_name_what_an_old_kernel_lacks() {
    let err = kernel_like(&[], &[("kfree_skb", 2)])
        .drop_reasons()
        .unwrap_err();
    assert_eq!(
        err,
        "drop reasons need Linux >= 5.17 (no enum skb_drop_reason in this kernel's BTF)"
    );
    let n = kernel_like(
        &[
            ("SKB_NOT_DROPPED_YET", 0),
            ("SKB_DROP_REASON_NOT_SPECIFIED", 2),
            ("SKB_DROP_REASON_NO_SOCKET", 3),
            ("SKB_DROP_REASON_MAX", 4),
        ],
        &[("kfree_skb", 3)],
    )
    .drop_reasons()
    .unwrap();
    assert_eq!(
        n.core_names().collect::<Vec<_>>(),
        ["NOT_SPECIFIED", "NO_SOCKET"]
    );
    assert_eq!(n.not_drops, [0]);
}
