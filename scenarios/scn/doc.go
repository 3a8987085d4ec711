// Package scn is the khosim scenario language (*.scn files), as the
// contracts /work/shared/spec/scenario-language.md and
// live-update-designs.md define it: a lexer, an AST, a parser and the data
// generators. Nothing here runs a scenario: package scenarios does, on a
// machine.Machine, and it also owns the table of system calls and
// expression functions, whose signatures it hands to the parser as a Lang.
//
// Parse reads a whole file and returns a *Script and, when the file has
// errors, an ErrorList holding every one of them as FILE:LINE:COL: message,
// sorted by position. A script that came with errors must not be run.
// Positions are 1-based lines and 1-based byte columns (see Pos).
//
// # Grammar
//
// One statement per line; `#` starts a comment outside strings.
//
//	stmt    = "machine" {key "=" value}            memory= swap= seed= scratch=
//	        | "boot" {build}
//	        | "process" NAME {("uid" "=" INT | "caps" "=" NAME {"|" NAME})}
//	        | "exit" NAME | "reboot" | "snapshot" NAME    snapshot: an extension
//	        | "kexec" {build} ["->" ERRNO]
//	        | "kho" ("activate" | "deactivate") ["->" ERRNO]
//	        | "fault" SITE {("nth" | "times") "=" INT}
//	        | "corrupt" "fdt" INT INT
//	        | "let" NAME "=" expr
//	        | "expect" "invariants" | "expect" expr ("==" | "!=") expr
//	        | NAME ":" [NAME "="] NAME "(" [arg {"," arg}] ")" ["->" ERRNO]
//	build   = KEY "=" NAME                           kbuild.Keys(): kho= fdbox= luo= memfd= shmem_huge=
//	arg     = [NAME "="] expr
//	expr    = sum {"|" sum}
//	sum     = product {("+" | "-") product}
//	product = unary {"*" unary}
//	unary   = "-" unary | primary
//	primary = INT | STRING | "(" expr ")" | NAME ":" NAME | NAME "(" [expr {"," expr}] ")" | NAME
//
// A line whose first two tokens are NAME ":" is a system call, so a
// process may be named like a keyword (`kexec: close(3)`). Options of
// machine, boot, kexec, process and fault may come in any order; their
// values are integer literals (or names where shown), not expressions. On
// boot and kexec a build key given twice counts with its last value; on the
// other statements a key given twice is an error.
//
// # Names
//
// A bare NAME used as a value is, in this order: a constant or errno name
// (a *Const); a function written without parentheses (`zeros`); or a name
// bound earlier in the file, by `let NAME =` or by `PROC: NAME = CALL(...)`
// (an *Ident, which the runner resolves: inside a system call a resource of
// the calling process first, then a variable; elsewhere a variable). Any
// other bare name is a parse error: nothing runs. A name is bound from the
// line after its binding on (`let x = x + 1` needs an earlier x). Names
// that are not values are not looked up: the process of fds(PROC) and the
// frame state of frames(STATE) are *Word, and PROC:RES names a resource of
// a process whatever was bound.
//
// # What the parser resolves and checks
//
// Constant and errno names become their values (keeping their names for
// printing); size suffixes are applied; process credentials get their
// defaults (uid=1000, caps=none; uid=0 alone means caps=all); machine keys,
// build keys and values (package kbuild), fault sites and errno names are
// checked. System calls and expression functions are checked against the
// Lang's signatures: an unknown name is an error (so a typo is caught
// before anything runs), as are a wrong number of arguments, key=value
// arguments for a call without keys, the wrong keys for a command (an
// FDBox ioctl), and arguments that cannot have the right kind (a string
// for an fd, an integer for a path or for DATA, name= that is not a
// string). What needs a machine (which process or resource a name denotes
// at that point, whether a kernel runs) is left to the runner.
//
// # Extensions
//
//   - Integer arithmetic `+ - *`, unary `-` and parentheses, with `|`
//     binding loosest, then `+ -`, then `*`. Arithmetic wraps modulo 2^64
//     (Op.Apply), so `lseek(f, -1, SEEK_END)` passes the off_t -1 as Linux
//     would. Fold evaluates constant expressions. Chains of operators of
//     any length are printed and folded without recursion on their length
//     (BinaryChain), so a let of millions of terms costs linear time;
//     parentheses and unary operators nest at most 100 deep.
//   - `zeros()` is accepted as a synonym of `zeros`.
//   - Functions of a resource (content, hash, size, pos, seals, refcount,
//     mapcount) may name a resource of the calling process bare inside a
//     system call's arguments: `pwrite(f, 0, size(f), zeros)`.
//
// Every statement and expression prints back (String) to source that parses
// to the same tree, so the runner can quote expressions in its messages.
package scn
