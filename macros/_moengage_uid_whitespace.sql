{#-
    _moengage_uid_whitespace: the characters that make a uid blank, or pad it at either end.

    The one uid rule, shared with the Python runner (dbt_moengage/uids.py holds the same
    characters; tests/unit/test_uids.py checks that they agree): a uid is sent when it is not null,
    not blank and has none of these at either end. ASCII whitespace, plus the invisible
    characters that arrive from spreadsheets and web forms (no-break and zero-width spaces,
    the byte-order mark). bigquery__moengage_uid_trim spells them again by code point: a
    change here is a change there.
-#}
{% macro _moengage_uid_whitespace() %}
    {{ return(" \x09\x0a\x0b\x0c\x0d\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\u200b\u200c\u200d\u2060\ufeff") }}
{% endmacro %}
