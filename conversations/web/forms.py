"""Forms the pages post: signup, rename and a conversation's settings. They only validate;
the views hand the cleaned values to services."""

import json

from asgiref.sync import async_to_sync
from django import forms
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from conversations.accounts import awaiting_approval
from conversations.models import MODEL_ID_MAX_LENGTH, Conversation
from conversations.modelservers import providers

# The largest value an integer column holds on every database we support (PostgreSQL).
_MAX_INT = 2_147_483_647

_MODEL_ID = r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$"


class SignupForm(UserCreationForm):
    """Username and password twice; the password validators in settings apply."""


class LoginForm(AuthenticationForm):
    """Django's login form, which tells an account awaiting approval that it is, rather than
    calling its right password wrong."""

    def clean(self):
        try:
            return super().clean()
        except forms.ValidationError:
            username, password = self.data.get("username", ""), self.data.get("password", "")
            if username and password and awaiting_approval(username=username, password=password):
                raise forms.ValidationError(
                    "Your account is waiting for an administrator's approval. You can log in "
                    "once it is approved.",
                    code="awaiting_approval",
                ) from None
            raise


class AccountDeleteForm(forms.Form):
    password = forms.CharField(
        label="Your password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_password(self) -> str:
        password = self.cleaned_data["password"]
        if not self.user.check_password(password):
            raise forms.ValidationError("That is not your password.")
        return password


class RenameForm(forms.Form):
    # Blank gives the conversation back its "New chat" label.
    title = forms.CharField(max_length=200, required=False, strip=True)


class ConversationSettingsForm(forms.Form):
    model = forms.RegexField(
        regex=_MODEL_ID,
        max_length=MODEL_ID_MAX_LENGTH,
        error_messages={"invalid": "Choose a model from the list."},
    )
    system_prompt = forms.CharField(
        required=False,
        strip=False,
        max_length=32_000,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="Instructions the model reads before every message of this conversation.",
    )
    temperature = forms.FloatField(
        required=False,
        min_value=0,
        max_value=1.5,
        help_text="0 to 1.5: lower is focused, higher is varied. Blank: the model's default.",
    )
    top_p = forms.FloatField(
        required=False,
        max_value=1,
        help_text="Above 0, at most 1. Blank: the model's default.",
    )
    max_tokens = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=_MAX_INT,
        help_text="The longest answer, in tokens. Blank: no limit but the model's own.",
    )
    random_seed = forms.IntegerField(
        required=False,
        min_value=0,
        max_value=_MAX_INT,
        help_text="The same seed and settings give the same answer. Blank: random.",
    )
    safe_prompt = forms.BooleanField(
        required=False,
        help_text="Ask Mistral to add its safety instructions before the conversation.",
    )
    answer_format = forms.ChoiceField(
        choices=Conversation.AnswerFormat.choices,
        initial=Conversation.AnswerFormat.TEXT,
        required=False,  # left out: text, as a form from before the field posts
        help_text="JSON answers are shown formatted and can be downloaded as a .json file.",
    )
    # The name both Mistral and OpenAI-compatible servers accept for a schema.
    answer_schema_name = forms.RegexField(
        regex=r"^[A-Za-z0-9_-]{1,64}$",
        required=False,
        max_length=64,
        label="Schema name",
        error_messages={"invalid": "Letters, digits, _ and - only, at most 64."},
    )
    answer_schema = forms.CharField(
        required=False,
        strip=True,
        max_length=32_000,
        label="JSON schema",
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false"}),
        help_text="For “JSON matching a schema”: paste a JSON Schema (draft 2020-12).",
    )

    save_schema = forms.BooleanField(
        required=False,
        label="Save it to my schemas",
        help_text="Keep this schema under its name to pick it in other conversations.",
    )

    def __init__(self, *args, current_model: str = "", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.current_model = current_model  # kept even when no server lists it any more

    def clean_model(self) -> str:
        """Only a model the picker offers: the id is stored and sent upstream as it is."""
        model = self.cleaned_data["model"]
        if model != self.current_model and not async_to_sync(providers.model_offered)(model):
            raise forms.ValidationError("No model server of this site offers this model.")
        return model

    def clean_answer_format(self) -> str:
        return self.cleaned_data["answer_format"] or Conversation.AnswerFormat.TEXT

    def clean_answer_schema(self) -> dict | None:
        """A schema that parses and that jsonschema accepts as a schema, else a field error."""
        text = self.cleaned_data["answer_schema"]
        if not text:
            return None
        try:
            schema = json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"This is not valid JSON: {exc}.") from None
        if not isinstance(schema, dict):
            raise forms.ValidationError("A schema is a JSON object: {...}.")
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            where = exc.json_path
            raise forms.ValidationError(
                f"This is not a valid JSON schema: {exc.message} (at {where})."
            ) from None
        return schema

    def clean(self) -> dict:
        data = super().clean()
        if data.get("answer_format") == Conversation.AnswerFormat.SCHEMA:
            if not data.get("answer_schema") and "answer_schema" not in self.errors:
                self.add_error("answer_schema", "Paste the schema the answers should match.")
            if not data.get("answer_schema_name") and "answer_schema_name" not in self.errors:
                self.add_error("answer_schema_name", "Name the schema.")
        return data

    def clean_top_p(self) -> float | None:
        top_p = self.cleaned_data["top_p"]
        if top_p is not None and top_p <= 0:
            raise forms.ValidationError("Top P must be greater than 0.")
        return top_p
