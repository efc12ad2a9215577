//! Emails: which characters an email may hold, and the normal form two emails are compared in.
//!
//! An email is stored as the customer gave it (trimmed), for display. Uniqueness compares its
//! normal form ([`email_match_key`]), Unicode's compatibility caseless match (The Unicode
//! Standard, chapter 3.13, definition D146): `NFKD(toCasefold(NFKD(toCasefold(NFD(email)))))`,
//! kept composed (NFKC) so that an ASCII email's normal form is its lower-case form. So the
//! decomposed `e` + U+0301, the fullwidth `ａ` and upper case all meet their plain form.
//! Characters that have no place in an email (invisible ones such as U+200B ZERO WIDTH SPACE,
//! controls, private-use and unassigned code points) are refused instead, so that no two
//! emails differ only in what a reader cannot see. Refusing unassigned code points also keeps
//! the normal form stable: Unicode's normalization and case-folding stability policies
//! guarantee it for assigned characters only.

use icu_casemap::CaseMapperBorrowed;
use icu_normalizer::{ComposingNormalizerBorrowed, DecomposingNormalizerBorrowed};
use icu_properties::props::{DefaultIgnorableCodePoint, GeneralCategory};
use icu_properties::{CodePointMapData, CodePointSetData};

use crate::limits::EMAIL_BYTES_MAX;
use crate::rejection::Rejection;

/// An email: trimmed, at most [`EMAIL_BYTES_MAX`] bytes (also in its normal form), exactly one
/// `@` with text on both sides (also in its normal form, where a fullwidth `＠` is an `@`), no
/// character that [`is_allowed_in_email`] refuses. Returns the trimmed email as given.
pub(crate) fn email(field: &'static str, value: &str) -> Result<String, Rejection> {
    let value = value.trim();
    if value.is_empty() {
        return Err(Rejection::MissingField { field });
    }
    if let Some(character) = value.chars().find(|&c| !is_allowed_in_email(c)) {
        return Err(Rejection::EmailCharacterNotAllowed { field, character });
    }
    let match_key = email_match_key(value);
    if value.len() > EMAIL_BYTES_MAX || match_key.len() > EMAIL_BYTES_MAX {
        return Err(Rejection::InvalidField {
            field,
            reason: "longer than EMAIL_BYTES_MAX (254 bytes)",
        });
    }
    if has_one_at_sign_inside(value) && has_one_at_sign_inside(&match_key) {
        Ok(value.to_owned())
    } else {
        Err(Rejection::InvalidField {
            field,
            reason: "not an email: expected exactly one '@' with text on both sides",
        })
    }
}

/// The form two emails are compared in: the compatibility caseless form of the trimmed email
/// (see the module docs), composed. `"Cafe\u{301}@ＥXAMPLE.com"` becomes
/// `"café@example.com"`; an ASCII email becomes its lower-case form.
pub(crate) fn email_match_key(email: &str) -> String {
    let fold = CaseMapperBorrowed::new();
    let nfd = DecomposingNormalizerBorrowed::new_nfd();
    let nfkd = DecomposingNormalizerBorrowed::new_nfkd();
    let nfkc = ComposingNormalizerBorrowed::new_nfkc();
    let decomposed = nfd.normalize(email.trim());
    let folded = fold.fold_string(&decomposed);
    let once = nfkd.normalize(&folded);
    let folded_again = fold.fold_string(&once);
    nfkc.normalize(&folded_again).into_owned()
}

/// False for characters that have no place in an email: whitespace and line or paragraph
/// separators, controls (Cc), format characters (Cf: U+200B ZERO WIDTH SPACE, joiners, bidi
/// controls, U+FEFF, U+00AD SOFT HYPHEN), every other Default_Ignorable_Code_Point (fillers,
/// variation selectors), surrogates, private-use and unassigned code points.
pub(crate) fn is_allowed_in_email(character: char) -> bool {
    let category = CodePointMapData::<GeneralCategory>::new().get(character);
    let refused_category = matches!(
        category,
        GeneralCategory::Unassigned
            | GeneralCategory::SpaceSeparator
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
            | GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::PrivateUse
            | GeneralCategory::Surrogate
    );
    !refused_category
        && !character.is_whitespace()
        && !CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(character)
}

fn has_one_at_sign_inside(value: &str) -> bool {
    matches!(value.split_once('@'),
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() && !domain.contains('@'))
}
