// Package query is IoT Hub's query language over twins: a lexer, a parser
// and an evaluator over twin documents as IoT Hub's JSON (map[string]any).
//
//	SELECT [TOP n] * | item [AS alias], …  FROM devices | devices.modules
//	[WHERE condition] [GROUP BY path, …]
//
// Conditions have = != <> < > <= >= IN NIN AND OR NOT, + - * / %,
// parentheses, string (single or double quotes), number, boolean, null
// and array literals, and the functions IoT Hub has over twins: IS_DEFINED,
// IS_NULL, IS_BOOL, IS_NUMBER, IS_STRING, IS_OBJECT, IS_ARRAY,
// IS_PRIMITIVE, STARTSWITH and ENDSWITH. Keywords and function names are
// case-insensitive; property names are not.
//
// Semantics are IoT Hub's (Cosmos DB's): a property a twin lacks is
// undefined; a comparison with undefined, or between values of different
// types, is undefined; ordering (< > <= >=) is defined for numbers and for
// strings (ordinal); AND, OR and NOT are three-valued, and a twin matches only
// when its condition is true. So `tags.x != 'a'` does not match a twin
// without tags.x: use `NOT IS_DEFINED(tags.x) OR tags.x != 'a'`.
//
// Errors are *Error, with the byte offset of what was wrong.
//
// The package imports nothing of outpost: the hub runs queries and
// configurations' target conditions with it.
package query
