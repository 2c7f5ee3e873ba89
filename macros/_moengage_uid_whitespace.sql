{#-
    _moengage_uid_whitespace: the characters that make a uid blank, or pad it at either end.

    The one uid rule, shared with the Python runner (dbt_moengage/uids.py holds the same
    characters; tests/unit/test_uids.py checks that they agree): a uid is sent when it is not null,
    not blank and has none of these at either end. ASCII whitespace, plus the invisible
    characters that arrive from spreadsheets and web forms and render as nothing (no-break
    and zero-width spaces, the byte-order mark, the soft hyphen, bidi marks, fillers). bigquery__moengage_uid_trim spells them again by code point: a
    change here is a change there.
-#}
{% macro _moengage_uid_whitespace() %}
    {{ return(" \x09\x0a\x0b\x0c\x0d\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\u200b\u200c\u200d\u2060\ufeff\x1c\x1d\x1e\x1f\xad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180e\u180f\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2061\u2062\u2063\u2064\u2066\u2067\u2068\u2069\u206a\u206b\u206c\u206d\u206e\u206f\u2800\u3164\uffa0") }}
{% endmacro %}
