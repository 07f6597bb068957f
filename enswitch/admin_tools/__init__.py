"""Tools for the admin pages, one module each: `unix_times`, `large_tables`,
`index_search`, `word_lists`, `url_lookups`, `login`."""
