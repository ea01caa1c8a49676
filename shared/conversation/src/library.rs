//! The approved content a conversation may use, held in memory: articles to ground answers
//! (searched with BM25 over stemmed words, one index per language and reading level) and message
//! templates. Built from the store's approved versions, or from content files for evaluations.

use std::collections::HashMap;

use bm25::{
    DefaultTokenizer, Document, Language as Bm25Language, SearchEngine, SearchEngineBuilder,
};
use careloop_content::ContentDocument;
use careloop_core::{ContentKind, ContentVersionId, Language, ReadingLevel, Slug};
use careloop_store::ApprovedContent;

use crate::normalize;

/// An approved article.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Article {
    pub version_id: ContentVersionId,
    pub condition: Slug,
    pub topic: Slug,
    pub language: Language,
    pub level: ReadingLevel,
    pub title: String,
    pub body: String,
}

/// An approved message template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub version_id: ContentVersionId,
    pub key: String,
    pub language: Language,
    pub body: String,
}

impl Template {
    /// The body with `{name}` placeholders filled; unknown placeholders stay as written.
    pub fn render(&self, values: &[(&str, &str)]) -> String {
        let mut out = self.body.clone();
        for (name, value) in values {
            out = out.replace(&format!("{{{name}}}"), value);
        }
        out
    }
}

/// A search hit: an article and its score (higher is better).
#[derive(Debug, Clone, Copy)]
pub struct Hit<'a> {
    pub article: &'a Article,
    pub score: f32,
}

/// What to search for.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    pub text: &'a str,
    pub language: Language,
    pub level: ReadingLevel,
    /// The patient's conditions; their articles rank higher, the others stay searchable.
    pub conditions: &'a [Slug],
    pub limit: usize,
}

/// How much an article of one of the patient's own conditions is preferred.
const OWN_CONDITION_BOOST: f32 = 1.5;

pub struct Library {
    articles: Vec<Article>,
    templates: HashMap<(String, Language), Template>,
    indexes: HashMap<(Language, ReadingLevel), SearchEngine<usize>>,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library")
            .field("articles", &self.articles.len())
            .field("templates", &self.templates.len())
            .finish()
    }
}

fn bm25_language(language: Language) -> Bm25Language {
    match language {
        Language::English => Bm25Language::English,
        Language::Spanish => Bm25Language::Spanish,
        Language::French => Bm25Language::French,
        Language::German => Bm25Language::German,
        Language::Portuguese => Bm25Language::Portuguese,
        Language::Arabic => Bm25Language::Arabic,
    }
}

fn tokenizer(language: Language) -> DefaultTokenizer {
    DefaultTokenizer::builder()
        .language_mode(bm25_language(language))
        // bm25's normalization transliterates to ASCII, which would erase Arabic; Arabic text is
        // normalized by `prepare` instead.
        .normalization(language != Language::Arabic)
        .stemming(true)
        .stopwords(true)
        .build()
}

/// Text as the index sees it.
fn prepare(text: &str, language: Language) -> String {
    if language == Language::Arabic {
        normalize::normalized(text)
    } else {
        text.to_owned()
    }
}

impl Library {
    pub fn new(articles: Vec<Article>, templates: Vec<Template>) -> Library {
        let mut groups: HashMap<(Language, ReadingLevel), Vec<Document<usize>>> = HashMap::new();
        for (i, a) in articles.iter().enumerate() {
            // The title counts twice: it says what the article is about in few words.
            let text = format!("{}\n{}\n{}", a.title, a.title, a.body);
            groups
                .entry((a.language, a.level))
                .or_default()
                .push(Document::new(i, prepare(&text, a.language)));
        }
        let indexes = groups
            .into_iter()
            .map(|((language, level), docs)| {
                let engine = SearchEngineBuilder::<usize>::with_tokenizer_and_documents(
                    tokenizer(language),
                    docs,
                )
                .build();
                ((language, level), engine)
            })
            .collect();
        Library {
            articles,
            templates: templates
                .into_iter()
                .map(|t| ((t.key.clone(), t.language), t))
                .collect(),
            indexes,
        }
    }

    /// The store's approved content of one organization.
    pub fn from_approved(content: Vec<ApprovedContent>) -> Library {
        let mut articles = Vec::new();
        let mut templates = Vec::new();
        for c in content {
            match c.item.kind {
                ContentKind::Article => {
                    let Some(condition) = c.item.condition else {
                        continue;
                    };
                    articles.push(Article {
                        version_id: c.version.id,
                        topic: c.item.topic.unwrap_or_else(|| c.item.key.clone()),
                        condition,
                        language: c.item.language,
                        level: c.item.reading_level,
                        title: c.version.title,
                        body: c.version.body,
                    });
                }
                ContentKind::Template => templates.push(Template {
                    version_id: c.version.id,
                    key: c.item.key.as_str().to_owned(),
                    language: c.item.language,
                    body: c.version.body,
                }),
            }
        }
        Library::new(articles, templates)
    }

    /// Content files taken as approved (evaluations and tests); each gets a fresh version id.
    pub fn from_documents(docs: &[ContentDocument]) -> Library {
        let mut articles = Vec::new();
        let mut templates = Vec::new();
        for d in docs {
            match (d.kind, &d.condition) {
                (ContentKind::Article, Some(condition)) => articles.push(Article {
                    version_id: ContentVersionId::new(),
                    condition: condition.clone(),
                    topic: d.key.clone(),
                    language: d.language,
                    level: d.reading_level,
                    title: d.title.clone(),
                    body: d.body.clone(),
                }),
                (ContentKind::Template, _) => templates.push(Template {
                    version_id: ContentVersionId::new(),
                    key: d.key.as_str().to_owned(),
                    language: d.language,
                    body: d.body.clone(),
                }),
                _ => {}
            }
        }
        Library::new(articles, templates)
    }

    pub fn articles(&self) -> &[Article] {
        &self.articles
    }

    pub fn template(&self, key: &str, language: Language) -> Option<&Template> {
        self.templates.get(&(key.to_owned(), language))
    }

    /// The article for exactly this condition, topic, language and level.
    pub fn article(
        &self,
        condition: &Slug,
        topic: &str,
        language: Language,
        level: ReadingLevel,
    ) -> Option<&Article> {
        self.articles.iter().find(|a| {
            &a.condition == condition
                && a.topic.as_str() == topic
                && a.language == language
                && a.level == level
        })
    }

    /// Articles in the query's language and level, best first; only those sharing a word with
    /// the question.
    pub fn search(&self, q: &Query<'_>) -> Vec<Hit<'_>> {
        let Some(index) = self.indexes.get(&(q.language, q.level)) else {
            return Vec::new();
        };
        let text = prepare(q.text, q.language);
        let mut hits: Vec<Hit<'_>> = index
            .search(&text, None)
            .into_iter()
            .filter(|r| r.score > 0.0)
            .filter_map(|r| {
                let article = self.articles.get(r.document.id)?;
                let boost = if q.conditions.contains(&article.condition) {
                    OWN_CONDITION_BOOST
                } else {
                    1.0
                };
                Some(Hit {
                    article,
                    score: r.score * boost,
                })
            })
            .collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        hits.truncate(q.limit);
        hits
    }
}
