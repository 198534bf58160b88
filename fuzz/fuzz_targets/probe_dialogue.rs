//! The smtp, pop3 and imap dialogues against a peer sending arbitrary bytes:
//! they must never panic, hang or grow without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pigeon_dns::config::CheckKind;
use pigeon_dns::probe::fuzzing::dialogue;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let check = match selector % 3 {
        0 => CheckKind::Smtp,
        1 => CheckKind::Pop3,
        _ => CheckKind::Imap,
    };
    let _ = dialogue(check, input);
});
