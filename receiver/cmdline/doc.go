// Package cmdline splits the command string an SSH client sends (for example
// `ssh host 'run myapp manage.py "a b"'`) into argv.
//
// It follows POSIX sh quoting rules but performs no expansion of any kind:
// no variables, globs, tildes or command substitution. gitreceive never hands
// the command to a shell, so characters such as ';', '|', '&' and '>' are
// ordinary word characters and `a;b` is the single word "a;b".
package cmdline
